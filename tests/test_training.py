"""Training through `llava.train.train.train`: stage freezing, stage-1 -> stage-2 hand-off, logging."""

import json

import pytest
import torch
from training_helpers import changed, common_flags, train_capturing_initial_weights

from llava.constants import MM_PROJECTOR_FILE
from llava.model.projector_io import read_projector_file


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
