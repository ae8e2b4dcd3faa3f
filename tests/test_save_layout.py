"""One save layout, decided from what trains: for each meaningful combination of the freezing flags,
a few steps on a tiny model, then the output reloaded through `load_pretrained_model` holds every
trained tensor as training ended and every frozen one as it started."""

from __future__ import annotations

import logging

import pytest
import torch
from training_helpers import common_flags
from transformers import TrainerCallback

from llava.model.builder import load_pretrained_model
from llava.train.preflight import LaunchError
from llava.train.save_layout import SaveLayout, layout_for
from llava.train.train import train

LORA = ["--lora_enable", "True", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0.0"]
TOWER = ["--unfreeze_mm_vision_tower", "True"]
FREEZE_LLM = ["--freeze_backbone", "True"]

# (stage, extra flags, layout, trained parts: name prefixes that must change in training)
CASES = {
    "projector": (1, [], SaveLayout.PROJECTOR, ["mm_projector."]),
    "projector+tower": (1, TOWER, SaveLayout.PROJECTOR_AND_TOWER, ["mm_projector.", "vision_tower."]),
    "frozen-llm": (2, FREEZE_LLM, SaveLayout.PROJECTOR, ["mm_projector."]),
    "frozen-llm+tower": (2, FREEZE_LLM + TOWER, SaveLayout.PROJECTOR_AND_TOWER, ["mm_projector.", "vision_tower."]),
    "full": (2, [], SaveLayout.FULL, ["mm_projector.", "language_model."]),
    "full+tower": (2, TOWER, SaveLayout.FULL, ["mm_projector.", "language_model.", "vision_tower."]),
    "lora": (2, LORA, SaveLayout.LORA, ["mm_projector.", "lora_"]),
    "lora+projector-stage": (1, LORA, SaveLayout.LORA, ["mm_projector.", "lora_"]),
    "lora+tower": (2, LORA + TOWER, SaveLayout.LORA, ["mm_projector.", "lora_", "vision_tower."]),
}


class Snapshot(TrainerCallback):
    """The weights as training starts (after freezing and LoRA), keyed like the reloaded model's."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.start = {name: p.detach().clone() for name, p in model.named_parameters()}
        self.trainable = {name for name, p in model.named_parameters() if p.requires_grad}


def _reload(out, layout, base):
    model_base = None if layout is SaveLayout.FULL else str(base)
    _, model, _, _ = load_pretrained_model(str(out), model_base=model_base, merge_lora=False)
    return model


def _check_reload(trainer, snapshot, out, layout, base, trained_parts):
    assert trainer.save_layout is layout
    end = {name: p.detach() for name, p in trainer.model.named_parameters()}
    reloaded = dict(_reload(out, layout, base).named_parameters())
    assert set(reloaded) == set(end)
    for part in trained_parts:  # the run really changed each trained part: the comparison below can fail
        assert any(not torch.equal(end[n], snapshot.start[n]) for n in snapshot.trainable if part in n), part
    wrong = [
        name for name, tensor in reloaded.items()
        if not torch.equal(tensor, end[name] if name in snapshot.trainable else snapshot.start[name])
    ]
    assert not wrong, f"{len(wrong)} of {len(reloaded)} tensors reload wrong, e.g. {wrong[:3]}"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_output_reloads_trained_and_frozen_tensors_exactly(case, tiny_assets, tiny_data, tmp_path):
    stage, extra, layout, trained_parts = CASES[case]
    snapshot = Snapshot()
    flags = common_flags(tiny_assets, tiny_data, tmp_path, stage=stage, extra=[*extra, "--learning_rate", "1e-2"])
    trainer = train(flags, callbacks=[snapshot])
    _check_reload(trainer, snapshot, tmp_path, layout, tiny_assets["qwen2"], trained_parts)


def test_tower_layout_continued_from_a_llava_checkpoint_reloads_on_it(tiny_llava_checkpoint, tiny_data, tmp_path):
    """`--model_name_or_path` a whole parrot_llava checkpoint: `model_base` is that checkpoint."""
    snapshot = Snapshot()
    flags = [
        "--model_name_or_path", str(tiny_llava_checkpoint), "--image_folder", str(tiny_data["images"]),
        "--version", "plain", "--data_path", str(tiny_data["captions"]), "--tune_mm_mlp_adapter", "True",
        *TOWER, "--output_dir", str(tmp_path), "--per_device_train_batch_size", "4", "--max_steps", "2",
        "--save_strategy", "no", "--report_to", "none", "--dataloader_num_workers", "0", "--seed", "0",
        "--learning_rate", "1e-2", "--mm_use_im_patch_token", "False",
    ]
    trainer = train(flags, callbacks=[snapshot])
    _check_reload(trainer, snapshot, tmp_path, SaveLayout.PROJECTOR_AND_TOWER, tiny_llava_checkpoint,
                  ["mm_projector.", "vision_tower."])


def test_tower_layout_writes_projector_tower_and_config_only(tiny_assets, tiny_data, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="llava.train.save_layout")
    flags = common_flags(tiny_assets, tiny_data, tmp_path, stage=1, extra=TOWER + ["--max_steps", "1"])
    train(flags)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("save layout:")]
    assert len(said) == 1 and "projector+vision_tower" in said[0] and "--unfreeze_mm_vision_tower True" in said[0]
    names = {p.name for p in tmp_path.iterdir()}
    assert {"mm_projector.bin", "vision_tower.safetensors", "config.json"} <= names
    assert not names & {"model.safetensors", "pytorch_model.bin", "adapter_model.safetensors"}


def test_nothing_trainable_is_refused_before_training_naming_the_flags(tiny_assets, tiny_data, tmp_path):
    flags = common_flags(tiny_assets, tiny_data, tmp_path, stage=1, extra=["--freeze_mm_mlp_adapter", "True"])
    with pytest.raises(LaunchError, match="--freeze_mm_mlp_adapter") as err:
        train(flags)
    assert "--tune_mm_mlp_adapter" in str(err.value)
    assert not list(tmp_path.glob("checkpoint-*")) and not (tmp_path / "trainer_state.json").exists()


def _tower_weights(trainer):
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(("mm_projector.", "vision_tower."))}


@pytest.mark.slow
def test_tower_checkpoints_hold_the_tower_and_resume_to_the_uninterrupted_weights(tiny_assets, tiny_data, tmp_path):
    steps = ["--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--learning_rate", "1e-2"]
    whole = tmp_path / "whole"
    reference = _tower_weights(train(common_flags(tiny_assets, tiny_data, whole, stage=1, extra=TOWER + steps)))
    checkpoint = whole / "checkpoint-1"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"mm_projector.bin", "vision_tower.safetensors", "config.json", "optimizer.pt"} <= names
    assert "model.safetensors" not in names
    resumed_flags = common_flags(tiny_assets, tiny_data, tmp_path / "resumed", stage=1,
                                 extra=TOWER + steps + ["--resume_from_checkpoint", str(checkpoint)])
    resumed = _tower_weights(train(resumed_flags))
    assert all(torch.equal(resumed[n], reference[n]) for n in reference)


def test_projector_checkpoint_does_not_resume_a_run_that_trains_the_tower(tiny_assets, tiny_data, tmp_path):
    steps = ["--max_steps", "1", "--save_strategy", "steps", "--save_steps", "1"]
    train(common_flags(tiny_assets, tiny_data, tmp_path / "a", stage=1, extra=steps))
    flags = common_flags(tiny_assets, tiny_data, tmp_path / "b", stage=1,
                         extra=TOWER + steps + ["--resume_from_checkpoint", str(tmp_path / "a" / "checkpoint-1")])
    with pytest.raises(LaunchError, match="--unfreeze_mm_vision_tower"):
        train(flags)


def test_partial_layout_with_start_end_tokens_is_refused_naming_the_flags(tiny_assets, tiny_data, tmp_path):
    flags = common_flags(tiny_assets, tiny_data, tmp_path, stage=1, extra=TOWER + ["--mm_use_im_start_end", "True"])
    with pytest.raises(LaunchError, match="--mm_use_im_start_end True") as err:
        train(flags)
    assert "--unfreeze_mm_vision_tower True" in str(err.value)


@pytest.mark.parametrize(("names", "layout"), [
    (["mm_projector.0.weight"], SaveLayout.PROJECTOR),
    (["mm_projector.0.weight", "vision_tower.encoder.x"], SaveLayout.PROJECTOR_AND_TOWER),
    (["vision_tower.encoder.x"], SaveLayout.PROJECTOR_AND_TOWER),
    (["mm_projector.0.weight", "language_model.model.norm.weight"], SaveLayout.FULL),
    (["base_model.model.mm_projector.0.weight", "base_model.model.language_model.q_proj.lora_A.default.weight"],
     SaveLayout.LORA),
])
def test_layout_follows_the_trainable_names(names, layout):
    assert layout_for(names) is layout
