"""A paper-style stage-2 mixture trains the tiny Parrot model end to end: English instructions plus
data translated by llava.data.translate into five languages, each source with its own images."""

import json

import pytest
import yaml
from PIL import Image
from translation_server import TranslationServer, easyvqa_items, run_translate, write_items

from llava.train.train import train

LANGS = ("zh", "pt", "ar", "tr", "ru")
SAMPLING = {"zh": "random:6", "pt": "first:3", "ar": "end:2", "tr": "random:3", "ru": "fraction:0.5"}


@pytest.fixture(scope="module")
def translated(tmp_path_factory):
    root = tmp_path_factory.mktemp("translated")
    images = root / "images"
    images.mkdir()
    items = easyvqa_items(8, seed=3)
    for item in items:
        Image.new("RGB", (48, 48), "teal").save(images / item["image"])
    write_items(root / "evqa.json", items)
    with pytest.MonkeyPatch.context() as patch, TranslationServer() as server:
        patch.setenv("OPENAI_API_KEY", "test-key")
        assert run_translate(server, root / "evqa.json", root / "out", "--langs", ",".join(LANGS)) == 0
    return {"images": images, "files": {lang: root / "out" / f"evqa_{lang}.json" for lang in LANGS}}


@pytest.fixture
def fresh_wandb_run(tmp_path, monkeypatch):
    """transformers' WandbCallback reuses a run left open by an earlier training in this process, and
    wandb keeps the settings (WANDB_DIR) of its first use: tear both down."""
    import wandb

    wandb.finish()
    wandb.teardown()
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    yield tmp_path / "wandb"
    wandb.finish()
    wandb.teardown()


@pytest.mark.slow
def test_paper_style_mixture_trains_the_tiny_parrot_model(tiny_assets, tiny_data, translated, tmp_path, fresh_wandb_run):
    entries = [{"json_path": str(tiny_data["instructions"]), "image_folder": str(tiny_data["images"]),
                "lang": "en", "sampling": "all"}]
    entries += [{"json_path": str(translated["files"][lang]), "image_folder": str(translated["images"]),
                 "lang": lang, "sampling": SAMPLING[lang]} for lang in LANGS]
    mixture = tmp_path / "stage2.yaml"
    mixture.write_text(yaml.safe_dump({"datasets": entries}))
    out = tmp_path / "run"
    trainer = train([
        "--model_name_or_path", str(tiny_assets["qwen2"]), "--vision_tower", str(tiny_assets["clip"]),
        "--version", "qwen_2", "--data_path", str(mixture),
        "--mm_projector_type", "parrot_moe", "--moe_num_experts", "6", "--mm_vision_select_layer", "-2",
        "--mm_use_im_start_end", "False", "--mm_use_im_patch_token", "False", "--output_dir", str(out),
        "--per_device_train_batch_size", "4", "--max_steps", "2", "--save_strategy", "no", "--logging_steps", "1",
        "--learning_rate", "1e-3", "--report_to", "wandb", "--run_name", "mixture", "--dataloader_num_workers", "0",
        "--seed", "0",
    ])
    assert trainer.state.global_step == 2 and (out / "model.safetensors").exists()
    assert not (out / "skipped_samples.jsonl").exists()  # every image found in its source's folder
    expected = {"en": 17, "zh": 6, "pt": 3, "ar": 2, "tr": 3, "ru": 4}
    langs = {}
    for item in trainer.train_dataset.items:
        langs[item["lang"]] = langs.get(item["lang"], 0) + 1
    assert langs == expected
    (table_file,) = fresh_wandb_run.rglob("composition_*.table.json")
    table = json.loads(table_file.read_text())
    logged = {row[3]: row[4] for row in table["data"]}
    assert table["columns"] == ["source", "sampling", "available", "lang", "items"] and logged == expected
