"""Training through `llava.train.train.train`: stage freezing, stage-1 -> stage-2 hand-off, logging."""

import json

import pytest
import torch
from transformers import TrainerCallback

from llava.constants import MM_PROJECTOR_FILE
from llava.model.projector_io import read_projector_file
from llava.train.train import train


def common_flags(tiny_assets, tiny_data, out, *, stage: int, extra=()):
    flags = [
        "--model_name_or_path", str(tiny_assets["qwen2"]),
        "--vision_tower", str(tiny_assets["clip"]),
        "--image_folder", str(tiny_data["images"]),
        "--mm_projector_type", "mlp2x_gelu",
        "--mm_vision_select_layer", "-2",
        "--mm_use_im_start_end", "False",
        "--mm_use_im_patch_token", "False",
        "--output_dir", str(out),
        "--per_device_train_batch_size", "4",
        "--max_steps", "2",
        "--save_strategy", "no",
        "--logging_steps", "1",
        "--report_to", "none",
        "--dataloader_num_workers", "0",
        "--seed", "0",
    ]
    if stage == 1:
        flags += ["--version", "plain", "--data_path", str(tiny_data["captions"]),
                  "--tune_mm_mlp_adapter", "True", "--learning_rate", "1e-2"]
    else:
        flags += ["--version", "qwen_2", "--data_path", str(tiny_data["instructions"]), "--learning_rate", "1e-3"]
    return flags + list(extra)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before, model):
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


def train_capturing_initial_weights(argv):
    """Run training; return (trainer, parameters as they were when the first step began)."""
    captured = {}

    class SnapshotAtStart(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            captured["before"] = snapshot(model)

    trainer = train(argv, callbacks=[SnapshotAtStart()])
    return trainer, captured["before"]


@pytest.fixture(scope="module")
def stage1(tiny_assets, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    trainer, before = train_capturing_initial_weights(common_flags(tiny_assets, tiny_data, out, stage=1))
    return {"out": out, "trainer": trainer, "before": before}


def test_stage1_changes_only_the_projector(stage1):
    diff = changed(stage1["before"], stage1["trainer"].model)
    assert diff and all(name.startswith("mm_projector.") for name in diff)
    assert {n for n in stage1["before"] if n.startswith("mm_projector.")} == diff


def test_stage1_saves_upstream_named_projector_and_config(stage1):
    weights = torch.load(stage1["out"] / MM_PROJECTOR_FILE, weights_only=True)
    assert sorted(weights) == [f"model.mm_projector.{i}.{k}" for i in (0, 2) for k in ("bias", "weight")]
    config = json.loads((stage1["out"] / "config.json").read_text())
    assert config["mm_projector_type"] == "mlp2x_gelu" and config["tune_mm_mlp_adapter"] is True
    trained = stage1["trainer"].model.mm_projector.state_dict()
    assert all(torch.equal(weights[f"model.mm_projector.{k}"], v) for k, v in trained.items())


def test_stage2_loads_stage1_projector_and_trains_projector_and_llm_not_vision(stage1, tiny_assets, tiny_data, tmp_path):
    adapter = stage1["out"] / MM_PROJECTOR_FILE
    trainer, before = train_capturing_initial_weights(
        common_flags(tiny_assets, tiny_data, tmp_path, stage=2, extra=["--pretrain_mm_mlp_adapter", str(adapter)])
    )
    stage1_weights = read_projector_file(str(adapter))
    assert all(torch.equal(before[f"mm_projector.{k}"], v) for k, v in stage1_weights.items())
    diff = changed(before, trainer.model)
    assert any(n.startswith("mm_projector.") for n in diff)
    assert any(n.startswith("language_model.") for n in diff)
    assert not any(n.startswith("vision_tower.") for n in diff)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "preprocessor_config.json").exists()
