"""Training faults made loud and safe: non-finite weights are never saved, and stage-1 checkpoints
hold what trains rather than the whole frozen model (issue 17). Bad steps, damaged checkpoints,
preemption and full disks: tests/test_bad_steps.py, test_damaged_checkpoints.py, test_preemption.py,
test_disk_full.py (issue 15)."""

from __future__ import annotations

import pytest
import torch
from distributed_utils import train_flags
from transformers import TrainerCallback

from llava.constants import MM_PROJECTOR_FILE
from llava.train.checkpoint_marker import COMPLETE_MARKER
from llava.train.finite_checks import NonFiniteTrainingError
from llava.train.train import train

SAVE_EVERY_2 = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"]


def stage1_flags(assets, data, out, *extra: str) -> list[str]:
    return train_flags(assets, data, out, stage=1, extra=list(extra))


class PoisonProjector(TrainerCallback):
    """Writes a NaN into the projector at the end of step `step` (after that step's checks), or when
    training ends (`step=None`): weights that went bad without a bad loss to show it."""

    def __init__(self, step: int | None):
        self.step = step

    def poison(self, model) -> None:
        with torch.no_grad():
            next(model.mm_projector.parameters()).view(-1)[0] = float("nan")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            self.poison(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.step is None:
            self.poison(model)


@pytest.fixture(scope="module")
def stage1_run(tiny_assets, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1_checkpoints")
    train(stage1_flags(tiny_assets, tiny_data, out, *SAVE_EVERY_2))
    return out


def test_checkpoint_with_nonfinite_weights_is_never_marked_complete(tiny_assets, tiny_data, tmp_path):
    flags = stage1_flags(tiny_assets, tiny_data, tmp_path, *SAVE_EVERY_2)
    with pytest.raises(NonFiniteTrainingError, match="checkpoint-2: refused, trainable weights are NaN"):
        train(flags, callbacks=[PoisonProjector(step=2)])
    assert not (tmp_path / "checkpoint-2" / COMPLETE_MARKER).exists()


def test_final_save_refuses_nonfinite_weights(tiny_assets, tiny_data, tmp_path):
    flags = stage1_flags(tiny_assets, tiny_data, tmp_path, "--max_steps", "2", "--save_strategy", "no")
    with pytest.raises(NonFiniteTrainingError, match="saving the trained weights"):
        train(flags, callbacks=[PoisonProjector(step=None)])
    assert not (tmp_path / MM_PROJECTOR_FILE).exists()


def test_stage1_checkpoint_holds_the_projector_and_resume_state_not_the_frozen_model(stage1_run):
    checkpoint = stage1_run / "checkpoint-2"
    names = {p.name for p in checkpoint.iterdir()}
    assert {MM_PROJECTOR_FILE, "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= names
    assert not names & {"model.safetensors", "tokenizer.json"}
    projector = (checkpoint / MM_PROJECTOR_FILE).stat().st_size
    # AdamW keeps two moments per trained weight: about 3x the projector, plus small state files.
    assert sum(p.stat().st_size for p in checkpoint.iterdir()) < 4 * projector + 200_000
