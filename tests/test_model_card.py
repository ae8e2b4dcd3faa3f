"""Model cards: written by every final save, parsed by huggingface_hub, updated by evaluation, pushed with
`--push_to_hub` (the Hub itself replaced by a recorder: these tests run offline)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi, ModelCard
from training_helpers import common_flags

from llava.eval.card import record_results_on_card
from llava.eval.score import score_file
from llava.model import LlavaConfig
from llava.model.model_card import languages_of, redacted, render_card
from llava.train.train import train

PREDICTIONS = Path(__file__).parent / "fixtures" / "eval" / "predictions"
BENCH = Path(__file__).parent / "fixtures" / "eval" / "bench"


def stage_flags(tiny_assets, tiny_data, out, *extra):
    """Stage 2 for one step on the tiny LLaMA (its tokenizer loads faster than Qwen2's)."""
    faster = ["--model_name_or_path", str(tiny_assets["llama"]), "--version", "chatml", "--max_steps", "1"]
    return common_flags(tiny_assets, tiny_data, out, stage=2, extra=[*faster, *extra])


@pytest.fixture(scope="module")
def trained(tiny_assets, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained_with_card")
    train(stage_flags(tiny_assets, tiny_data, out, "--hub_token", "hf_secret"))
    return out


def test_final_save_writes_a_card_that_huggingface_hub_parses(trained, tiny_assets):
    card = ModelCard.load(trained / "README.md")
    assert card.data.pipeline_tag == "image-text-to-text" and card.data.library_name == "parrot-llava"
    assert card.data.language == ["en"]  # the `lang` of every item of the tiny instruction data
    assert card.data.base_model is None  # a local path is not a hub id: named in the text instead
    assert f"Started from `{tiny_assets['llama']}`" in card.text
    assert "  --mm_projector_type mlp2x_gelu \\\n" in card.text  # one flag and its value per line


def test_card_never_publishes_a_token(trained):
    text = (trained / "README.md").read_text()
    assert "hf_secret" not in text and "--hub_token '<redacted>'" in text


def test_card_names_hub_base_models_and_iso_languages(tiny_llava_checkpoint):
    config = LlavaConfig.from_pretrained(tiny_llava_checkpoint)
    config.text_config._name_or_path = "Qwen/Qwen1.5-7B-Chat"
    config.mm_vision_tower = "openai/clip-vit-large-patch14-336"
    items = [{"lang": "cn"}, {"lang": "zh"}, {"lang": "en"}, {"id": "no lang"}, {"lang": "Chinese (simplified)"}]
    record = SimpleNamespace(base_model=None, languages=languages_of(items), flags=[], command="train")
    card = ModelCard(str(render_card(config, record, name="parrot-7b")))
    assert card.data.base_model == ["Qwen/Qwen1.5-7B-Chat", "openai/clip-vit-large-patch14-336"]
    assert card.data.language == ["zh", "en"]  # `cn` is read as `zh`; a free-text label is not a code


def test_redaction_covers_separate_and_inline_values():
    flags = ["--hub_token", "abc", "--mm_use_im_patch_token", "False", "--wandb_api_key=xyz"]
    assert redacted(flags) == ["--hub_token", "<redacted>", "--mm_use_im_patch_token", "False", "--wandb_api_key=<redacted>"]


def test_evaluation_adds_a_per_language_table_and_keeps_earlier_benchmarks(trained, tmp_path):
    checkpoint = Path(shutil.copytree(trained, tmp_path / "ckpt", ignore=shutil.ignore_patterns("*.safetensors")))
    for name in ("MMMB_ar.tsv", "MMMB_ru.tsv", "MMBench_dev_en.tsv", "MMBench_dev_cn.tsv"):
        shutil.copy(PREDICTIONS / name, tmp_path / name)
    mmmb = [score_file(tmp_path / name) for name in ("MMMB_ar.tsv", "MMMB_ru.tsv")]
    record_results_on_card(checkpoint, mmmb)
    mmbench = [score_file(tmp_path / name) for name in ("MMBench_dev_en.tsv", "MMBench_dev_cn.tsv")]
    record_results_on_card(checkpoint, mmbench)
    card = ModelCard.load(checkpoint / "README.md")
    entries = {entry.dataset_name: entry for entry in card.data.eval_results}
    assert set(entries) == {"MMMB_ar", "MMMB_ru", "MMBench_dev_en", "MMBench_dev_cn"}
    assert entries["MMMB_ar"].metric_value == round(100 * mmmb[0].overall.accuracy, 2)
    evaluation = card.text.split("## Evaluation", 1)[1]
    table = [line for line in evaluation.splitlines() if line.startswith("| ")]
    assert table[0] == "| Benchmark | en | zh | ar | ru |"
    assert table[1].startswith("| MMMB (pair rule, ours prompt) | - | - | ") and table[2].startswith(
        "| MMBench (circular rule, ours prompt) | "
    )
    assert card.data.library_name == "parrot-llava" and "## How it was made" in card.text  # the rest is kept


def test_run_benchmark_records_its_scores_on_the_evaluated_checkpoint(tiny_llava_checkpoint, tmp_path):
    from llava.eval.run_benchmark import main

    checkpoint = Path(shutil.copytree(tiny_llava_checkpoint, tmp_path / "ckpt"))
    (checkpoint / "README.md").unlink(missing_ok=True)
    argv = ["--model-path", str(checkpoint), "--files", str(BENCH / "MMMB_en.tsv"), "--output-dir", str(tmp_path / "eval")]
    assert main([*argv, "--max-new-tokens", "2", "--device", "cpu"]) == 0
    card = ModelCard.load(checkpoint / "README.md")  # the checkpoint had none: drawn from its config
    assert [entry.dataset_name for entry in card.data.eval_results] == ["MMMB_en"]
    assert "| MMMB (pair rule, ours prompt) |" in card.text


class HubRecorder:
    """Stands in for the Hub: records repo creation and uploads, with the files present at upload time."""

    def __init__(self):
        self.repos, self.uploads = [], []

    def create_repo(self, repo_id, **kwargs):
        self.repos.append(repo_id)
        return SimpleNamespace(repo_id=f"me/{repo_id.split('/')[-1]}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        card = (Path(folder_path) / "README.md").read_text()
        self.uploads.append({"repo_id": repo_id, "files": files, "card": card, **kwargs})


def test_push_to_hub_uploads_the_finished_folder_once_with_our_card(tiny_assets, tiny_data, tmp_path, monkeypatch):
    hub = HubRecorder()
    monkeypatch.setattr(HfApi, "create_repo", hub.create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", hub.upload_folder)
    train(stage_flags(tiny_assets, tiny_data, tmp_path, "--push_to_hub", "True", "--hub_model_id", "me/tiny-parrot"))
    assert hub.repos == ["me/tiny-parrot"]
    assert len(hub.uploads) == 1 and hub.uploads[0]["repo_id"] == "me/tiny-parrot"
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= set(hub.uploads[0]["files"])
    assert "library_name: parrot-llava" in hub.uploads[0]["card"]
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "parrot_llava"


@pytest.mark.parametrize(("projector", "settings", "expected"), [
    ("pargo", {"pargo_num_global_queries": 3}, "pargo_num_global_queries=3"),
    ("parrot_moe", {"moe_num_experts": 4}, "moe_num_experts=4"),
    ("parrot_moe", {"moe_base_projector": "pargo", "pargo_num_partial_queries": 5}, "pargo_num_partial_queries=5"),
])
def test_the_card_lists_every_setting_the_projector_registered(tiny_assets, projector, settings, expected):
    """Whatever the plugin's prefix: the flags its `arguments` dataclass (and the one it stacks on) declare."""
    from transformers import AutoConfig

    config = LlavaConfig(text_config=AutoConfig.from_pretrained(tiny_assets["qwen2"]).to_dict(),
                         vision_config=AutoConfig.from_pretrained(tiny_assets["clip"]).to_dict(),
                         mm_projector_type=projector, **settings)
    parts = next(line for line in render_card(config, name="x").text.splitlines() if line.startswith("| projector |"))
    assert expected in parts, parts
