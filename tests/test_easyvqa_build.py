"""The easy-VQA data builder: LLaVA JSON, benchmark TSVs, determinism and split hygiene."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest

from llava.eval.benchmark import read_benchmark
from llava.eval.prompts import build_mcq_prompt
from playground.easyvqa.__main__ import main
from playground.easyvqa.benchmarks import CIRCULAR_OFFSET
from playground.easyvqa.build import BuildConfig, build
from playground.easyvqa.probes import SKILLS
from playground.easyvqa.source import image_file, image_ids, load_questions, read_image_attributes
from playground.easyvqa.training import assign_languages, parse_mix
from playground.easyvqa.translations import (
    LANGUAGES,
    benchmark_code,
    capitalize,
    format_mcq_prompt,
    load_table,
)

SIZES = {"num_stage1": 60, "num_stage2": 400, "num_test_images": 30, "probe_per_skill": 2}


def _build(root: Path, name: str, seed: int) -> Path:
    out = root / name
    build(BuildConfig(out=out, seed=seed, **SIZES))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("easyvqa"), "seed0", seed=0)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _tsv_files(root: Path, family: str) -> dict[str, Path]:
    return {lang: root / f"{family}_{benchmark_code(lang)}.tsv" for lang in LANGUAGES}


def _image_bytes_by_row(rows: list[dict[str, str]]) -> dict[str, bytes]:
    """index -> PNG bytes, following references to the row that holds the data."""
    data = {row["index"]: row["image"] for row in rows if len(row["image"]) > 64}
    return {row["index"]: base64.b64decode(data[row["image"]] if row["image"] in data else row["image"]) for row in rows}


def test_same_seed_gives_byte_identical_files(built, tmp_path):
    again = _build(tmp_path, "again", seed=0)
    assert _hashes(again) == _hashes(built)
    assert any(name.endswith(".tsv") for name in _hashes(built))


def test_another_seed_gives_other_data(built, tmp_path):
    other = _build(tmp_path, "seed1", seed=1)
    assert (other / "stage2_instruct.json").read_bytes() != (built / "stage2_instruct.json").read_bytes()
    assert (other / "MMMB_en.tsv").read_bytes() != (built / "MMMB_en.tsv").read_bytes()


def test_training_json_is_llava_format_with_images_on_disk(built):
    for name in ("stage1_captions.json", "stage2_instruct.json", "stage2_instruct_en_only.json"):
        for item in json.loads((built / name).read_text(encoding="utf-8")):
            assert set(item) == {"id", "image", "conversations", "lang"}
            human, gpt = item["conversations"]
            assert (human["from"], gpt["from"]) == ("human", "gpt")
            assert human["value"].startswith("<image>") and gpt["value"]
            assert item["lang"] in LANGUAGES
            assert (built / "images" / item["image"]).is_file()


def test_stage1_human_turn_is_only_the_image_token(built):
    items = json.loads((built / "stage1_captions.json").read_text(encoding="utf-8"))
    assert {item["conversations"][0]["value"] for item in items} == {"<image>"}


def test_default_mix_is_80_percent_english_and_4_percent_each_other(built):
    items = json.loads((built / "stage2_instruct.json").read_text(encoding="utf-8"))
    counts = Counter(item["lang"] for item in items)
    assert counts == {"en": 320, "zh": 16, "pt": 16, "ar": 16, "tr": 16, "ru": 16}


def test_stage2_has_free_form_and_multiple_choice_items_in_every_language(built):
    table = load_table()
    kinds = defaultdict(set)
    for item in json.loads((built / "stage2_instruct.json").read_text(encoding="utf-8")):
        human, reply = item["conversations"][0]["value"], item["conversations"][1]["value"]
        if table.letter_instruction(item["lang"]) in human:
            kinds[item["lang"]].add("mcq")
            assert reply in "ABCD" and f"\n{reply}. " in human
        else:
            kinds[item["lang"]].add("free")
            assert reply in table.answer_vocabulary(item["lang"]).values()  # answered in the question's language
    assert all(kinds[lang] == {"free", "mcq"} for lang in LANGUAGES)


def _english_items(built: Path) -> list[tuple[dict, str, str | None]]:
    """(item, question, MCQ reply as its option word or None) of the English-only stage-2 file."""
    items = []
    for item in json.loads((built / "stage2_instruct_en_only.json").read_text(encoding="utf-8")):
        lines = item["conversations"][0]["value"].split("\n")
        reply = item["conversations"][1]["value"]
        options = {line[0]: line[3:] for line in lines[2:-1]}
        items.append((item, lines[1], options.get(reply) if options else None))
    return items


def test_english_only_stage2_is_the_same_items_answered_as_the_image_shows(built):
    mixed = json.loads((built / "stage2_instruct.json").read_text(encoding="utf-8"))
    english = _english_items(built)
    assert [(i["id"], i["image"]) for i, _, _ in english] == [(i["id"], i["image"]) for i in mixed]
    table = load_table()
    for item, question, option_word in english:
        color, shape = read_image_attributes(built / "images" / item["image"])
        template, slot_color, slot_shape = table.match_english(question.lower())
        expected = capitalize(template.answer(color, shape, slot_color, slot_shape), "en")
        assert (option_word or item["conversations"][1]["value"]) == expected, question


def test_stage2_kinds_come_in_set_shares_and_yes_no_is_balanced_in_the_benchmark_layout(built):
    table = load_table()
    kinds, yes_no_answers = Counter(), Counter()
    for item, question, option_word in _english_items(built):
        kind = table.match_english(question.lower())[0].kind
        kinds["yes_no" if kind.startswith("exists") else kind] += 1
        if kind.startswith("exists"):
            yes_no_answers[option_word or item["conversations"][1]["value"]] += 1
            if option_word is not None:
                assert item["conversations"][0]["value"].split("\n")[2:4] == ["A. Yes", "B. No"]
    assert kinds == {"color": 134, "shape": 133, "yes_no": 133}  # 400 items; the extra one goes to the first kind
    assert abs(yes_no_answers["Yes"] - yes_no_answers["No"]) < 0.25 * sum(yes_no_answers.values())


def test_test_images_are_never_training_images(built):
    train_split = {hashlib.sha256(image_file("train", i).read_bytes()).digest() for i in image_ids("train")}
    used_for_training = {hashlib.sha256(p.read_bytes()).digest() for p in (built / "images" / "train").rglob("*.png")}
    assert used_for_training <= train_split
    for path in [*_tsv_files(built, "MMMB").values(), *_tsv_files(built, "MMBench_dev").values()]:
        tested = {hashlib.sha256(png).digest() for png in _image_bytes_by_row(_tsv(path)).values()}
        assert tested and not tested & train_split


def test_probe_set_reads_only_test_images_the_benchmarks_leave_out(built):
    probe = json.loads((built / "probe.json").read_text(encoding="utf-8"))
    assert Counter((item["skill"], item["lang"]) for item in probe) == {
        (skill, lang): 2 for skill in SKILLS for lang in LANGUAGES
    }
    test_split = {hashlib.sha256(image_file("test", i).read_bytes()).digest() for i in image_ids("test")}
    benchmark = {hashlib.sha256(png).digest() for png in _image_bytes_by_row(_tsv(built / "MMMB_en.tsv")).values()}
    probed = {hashlib.sha256((built / "images" / item["image"]).read_bytes()).digest() for item in probe}
    assert probed <= test_split and not probed & benchmark
    for item in probe:
        reply = item["conversations"][1]["value"]
        assert (reply in "ABCD") == item["skill"].endswith("MCQ"), item


def test_every_language_has_the_same_items(built):
    files = _tsv_files(built, "MMMB")
    reference = _tsv(files["en"])
    for lang, path in files.items():
        rows = _tsv(path)
        for column in ("index", "answer", "category", "image"):
            assert [r[column] for r in rows] == [r[column] for r in reference], (lang, column)


def test_yes_no_items_come_in_pairs_one_yes_one_no_per_image(built):
    table = load_table()
    for lang, path in _tsv_files(built, "MMMB").items():
        rows = _tsv(path)
        images = _image_bytes_by_row(rows)
        by_image = defaultdict(list)
        for row in rows:
            by_image[images[row["index"]]].append(row)
        pairs = [group for group in by_image.values() if group[0]["category"] == "yes_no"]
        assert pairs
        yes, no = table.answer("yes", lang), table.answer("no", lang)
        for group in by_image.values():
            if group[0]["category"] != "yes_no":
                assert len(group) == 1 and all(group[0][letter] for letter in "ABCD")
                continue
            assert len(group) == 2 and {r["category"] for r in group} == {"yes_no"}
            assert [(r["A"], r["B"], r["C"], r["D"]) for r in group] == [(yes, no, "", "")] * 2
            assert sorted(r[r["answer"]] for r in group) == sorted([yes, no])


def test_mmmb_answers_agree_with_easy_vqa_wherever_it_asks_the_same_question(built):
    by_bytes = {image_file("test", i).read_bytes(): i for i in image_ids("test")}
    truth = {(q.image_id, capitalize(q.text, "en")): capitalize(q.answer, "en") for q in load_questions("test")}
    rows = _tsv(built / "MMMB_en.tsv")
    images = _image_bytes_by_row(rows)
    compared = 0
    for row in rows:
        expected = truth.get((by_bytes[images[row["index"]]], row["question"]))
        if expected is not None:
            assert row[row["answer"]] == expected, row["question"]
            compared += 1
    assert compared >= 5


def test_mmbench_circular_copies_rotate_options_and_answer_together(built):
    for path in _tsv_files(built, "MMBench_dev").values():
        groups = defaultdict(list)
        for row in _tsv(path):
            groups[int(row["index"]) % CIRCULAR_OFFSET].append(row)
        for rows in groups.values():
            rows.sort(key=lambda r: int(r["index"]))
            original = [rows[0][letter] for letter in "ABCD" if rows[0][letter]]
            assert len(rows) == len(original)
            for k, row in enumerate(rows):
                assert int(row["index"]) // CIRCULAR_OFFSET == k
                assert [row[letter] for letter in "ABCD" if row[letter]] == original[k:] + original[:k]
                assert row[row["answer"]] == rows[0][rows[0]["answer"]]
                assert row["question"] == rows[0]["question"]


def test_tsvs_parse_with_the_evaluation_reader(built):
    for family in ("MMMB", "MMBench_dev"):
        for lang, path in _tsv_files(built, family).items():
            benchmark = read_benchmark(path)
            assert benchmark.language == lang
            assert not [issue for item in benchmark.items for issue in item.issues]
            assert benchmark.load_image(benchmark.items[-1]).size == (64, 64)


def test_training_mcq_prompt_is_the_prompt_the_evaluation_builds(built):
    table = load_table()
    for lang, path in _tsv_files(built, "MMBench_dev").items():
        for item in read_benchmark(path).items:
            options = list(item.options.values())
            assert build_mcq_prompt(item, lang) == format_mcq_prompt(table, item.question, options, lang)


def test_tsvs_parse_with_pandas_as_vlmevalkit_reads_them(built):
    frame = pd.read_csv(built / "MMMB_ar.tsv", sep="\t")
    assert list(frame.columns) == ["index", "question", "A", "B", "C", "D", "answer", "category", "l2-category", "split", "image"]
    yes_no = frame[frame["category"] == "yes_no"]
    assert yes_no["C"].isna().all() and frame[frame["category"] != "yes_no"]["D"].notna().all()


def test_manifest_counts_match_the_files(built):
    manifest = json.loads((built / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 0
    assert manifest["files"]["stage1_captions.json"]["items"] == SIZES["num_stage1"]
    assert manifest["files"]["MMMB_ru.tsv"]["rows"] == len(_tsv(built / "MMMB_ru.tsv"))
    assert manifest["test_units"] == {"color": 10, "shape": 10, "yes_no": 10}


def test_language_assignment_hits_exact_counts():
    mix = parse_mix("en=0.5,cn=0.25,ru=0.25")
    counts = Counter(assign_languages(10, mix, random.Random(0)))
    assert counts == {"en": 5, "zh": 3, "ru": 2} or counts == {"en": 5, "zh": 2, "ru": 3}


@pytest.mark.parametrize("bad_mix", ["english=1", "en", "en=abc", "en=-1", "en=0"])
def test_bad_mix_is_rejected_naming_the_flag(bad_mix):
    with pytest.raises(ValueError, match="--mix"):
        parse_mix(bad_mix)


def test_cli_refuses_a_non_empty_folder_that_is_not_a_build(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(["build", "--out", str(tmp_path), "--num-stage1", "1", "--num-stage2", "1", "--num-test-images", "3"])
    assert "--out" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"
