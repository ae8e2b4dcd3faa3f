"""--data_path mixture.yaml: sampling strategies, determinism, per-source image folders, errors."""

import json
import logging
import os
from pathlib import Path

import pytest
import yaml
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer

from llava.conversation import get_conv_template
from llava.data.dataset import DataConfig, LazySupervisedDataset, SkipLog
from llava.data.mixture import MixtureError, load_data, parse_mixture

REPO = Path(__file__).resolve().parents[1]


def item(i, prefix="x", image=None):
    entry = {"id": f"{prefix}{i}", "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a"}]}
    if image:
        entry["image"] = image
        entry["conversations"][0]["value"] = "<image>\n" + entry["conversations"][0]["value"]
    return entry


@pytest.fixture
def sources(tmp_path):
    paths = {}
    for name, count in (("en", 20), ("zh", 10), ("pt", 10)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps([item(i, prefix=name) for i in range(count)]))
    return paths


def write_mixture(path, entries):
    path.write_text(yaml.safe_dump({"datasets": entries}))
    return str(path)


def ids(data):
    return [i["id"] for i in data.items]


def test_each_sampling_strategy_takes_its_count(sources, tmp_path):
    mixture = write_mixture(tmp_path / "m.yaml", [
        {"json_path": str(sources["en"]), "sampling": "all", "lang": "en"},
        {"json_path": str(sources["zh"]), "sampling": "first:3", "lang": "zh"},
        {"json_path": str(sources["pt"]), "sampling": "end:2", "lang": "pt"},
        {"json_path": str(sources["zh"]), "sampling": "random:4"},
        {"json_path": str(sources["en"]), "sampling": "fraction:0.25"},
    ])
    data = load_data(mixture, seed=0)
    assert [sum(row.langs.values()) for row in data.composition] == [20, 3, 2, 4, 5]
    got = ids(data)
    assert got[:20] == [f"en{i}" for i in range(20)]
    assert got[20:23] == ["zh0", "zh1", "zh2"] and got[23:25] == ["pt8", "pt9"]
    assert len(set(got[25:29])) == 4 and all(i.startswith("zh") for i in got[25:29])
    assert len(set(got[29:])) == 5 and all(i.startswith("en") for i in got[29:])
    assert {i["lang"] for i in data.items[20:23]} == {"zh"}


def test_the_same_seed_gives_the_same_items_and_another_seed_others(sources, tmp_path):
    mixture = write_mixture(tmp_path / "m.yaml", [{"json_path": str(sources["en"]), "sampling": "random:8"},
                                                  {"json_path": str(sources["zh"]), "sampling": "fraction:0.5"}])
    assert ids(load_data(mixture, seed=7)) == ids(load_data(mixture, seed=7))
    assert ids(load_data(mixture, seed=7)) != ids(load_data(mixture, seed=8))


def test_composition_table_counts_items_per_source_and_language(sources, tmp_path):
    mixture = write_mixture(tmp_path / "m.yaml", [
        {"json_path": str(sources["en"]), "lang": "en"}, {"json_path": str(sources["zh"]), "lang": "zh", "sampling": "first:4"}])
    table = load_data(mixture).table().splitlines()
    assert table[0].split() == ["source", "sampling", "available", "used", "en", "zh"]
    assert table[1].split() == ["en.json", "all", "20", "20", "20", "0"]
    assert table[2].split() == ["zh.json", "first:4", "10", "4", "0", "4"]
    assert table[3].split() == ["total", "24", "20", "4"]


def test_plain_and_comma_separated_paths_still_load(sources):
    data = load_data(f"{sources['zh']},{sources['pt']}")
    assert len(data.items) == 20 and [row.source for row in data.composition] == ["zh.json", "pt.json"]


def test_environment_variables_expand_with_nested_defaults(sources, tmp_path, monkeypatch):
    monkeypatch.setenv("MIX_ROOT", str(tmp_path))
    monkeypatch.delenv("MIX_ZH", raising=False)
    mixture = write_mixture(tmp_path / "m.yaml", [{"json_path": "${MIX_ZH:-${MIX_ROOT}/zh.json}"}])
    assert parse_mixture(mixture)[0].json_path == str(sources["zh"])


@pytest.mark.parametrize("entry, message", [
    ({"json_path": "/nowhere/data.json"}, "entry 2 (/nowhere/data.json): json_path /nowhere/data.json does not exist"),
    ({"json_path": "${MIX_UNSET_VARIABLE}/a.json"}, "${MIX_UNSET_VARIABLE} is not set"),
    ({"json_path": "{zh}", "sampling": "top:3"}, "sampling 'top:3'"),
    ({"json_path": "{zh}", "image_folder": "/nowhere/images"}, "image_folder /nowhere/images is not a folder"),
    ({"json_path": "{zh}", "weight": 2}, "unknown keys ['weight']"),
    ({"image_folder": "/tmp"}, "each entry needs a json_path"),
])
def test_a_bad_entry_fails_naming_the_file_and_entry(entry, message, sources, tmp_path):
    entry = {k: v.replace("{zh}", str(sources["zh"])) if isinstance(v, str) else v for k, v in entry.items()}
    mixture = write_mixture(tmp_path / "m.yaml", [{"json_path": str(sources["en"])}, entry])
    with pytest.raises((MixtureError, FileNotFoundError)) as err:
        parse_mixture(mixture)
    assert f"--data_path {mixture} entry 2" in str(err.value) and message in str(err.value)


def test_asking_for_more_items_than_a_file_holds_is_an_error(sources, tmp_path):
    mixture = write_mixture(tmp_path / "m.yaml", [{"json_path": str(sources["zh"]), "sampling": "random:11"}])
    with pytest.raises(MixtureError, match="asks for 11 items, the file has 10"):
        load_data(mixture)


def test_per_source_image_folders_are_honoured(tiny_assets, tmp_path, caplog):
    folders = {}
    for colour in ("red", "blue"):
        folders[colour] = tmp_path / colour
        folders[colour].mkdir()
        Image.new("RGB", (32, 32), colour).save(folders[colour] / "0.png")  # same name, different picture
        (tmp_path / f"{colour}.json").write_text(json.dumps([item(0, prefix=colour, image="0.png")]))
    mixture = write_mixture(tmp_path / "m.yaml", [
        {"json_path": str(tmp_path / f"{c}.json"), "image_folder": str(folders[c]), "lang": c} for c in ("red", "blue")])
    config = DataConfig(template=get_conv_template("qwen_2"), image_folder=None,
                        image_processor=AutoImageProcessor.from_pretrained(tiny_assets["clip"]), num_image_tokens=4)
    with caplog.at_level(logging.INFO, logger="llava.data.dataset"):
        dataset = LazySupervisedDataset(mixture, AutoTokenizer.from_pretrained(tiny_assets["qwen2"]), config, SkipLog())
    red, blue = dataset[0]["images"][0], dataset[1]["images"][0]
    assert red[0].mean() > red[2].mean() and blue[2].mean() > blue[0].mean()
    assert "data composition" in caplog.text and "red.json" in caplog.text


def test_the_paper_stage2_mixture_declares_table_1(tmp_path, monkeypatch):
    monkeypatch.setenv("PARROT_DATA", str(tmp_path))
    (tmp_path / "parrot").mkdir()
    for name in ["llava_v1_5_mix665k.json", *(f"parrot/sharegpt4v_{lang}.json" for lang in ("zh", "pt", "ar", "tr", "ru"))]:
        (tmp_path / name).write_text("[]")
    sources = parse_mixture(str(REPO / "scripts" / "parrot" / "stage2_mixture.yaml"))
    declared = {(os.path.relpath(s.json_path, tmp_path), s.lang, s.sampling) for s in sources}
    assert declared == {
        ("llava_v1_5_mix665k.json", "en", "all"),
        ("parrot/sharegpt4v_zh.json", "zh", "random:71000"),
        ("parrot/sharegpt4v_pt.json", "pt", "random:14000"),
        ("parrot/sharegpt4v_ar.json", "ar", "random:12000"),
        ("parrot/sharegpt4v_tr.json", "tr", "random:17000"),
        ("parrot/sharegpt4v_ru.json", "ru", "random:14000"),
    }
    assert all(s.image_folder == str(tmp_path) for s in sources)
