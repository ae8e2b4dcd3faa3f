"""Bad steps (issue 15): a step whose loss or gradient norm is NaN or infinite is not applied, is
logged with its sample ids, and `--max_bad_steps` of them in a row stop the run with a message that
names the steps, the samples and the last good checkpoint. The fp16 loss scaler's own skips are
not bad steps. (Agreement across ranks: tests/test_preemption.py, whose two-rank run has a bad
sample on one rank.)"""

from __future__ import annotations

import logging
import math
import re

import pytest
import torch
from distributed_utils import train_flags
from training_helpers import nan_images_for
from transformers import TrainerCallback

from llava.constants import MM_PROJECTOR_FILE
from llava.train.step_guard import BadStepsError, StepGuard
from llava.train.train import main, train
from llava.train.trainer import LLaVATrainer

EIGHT_STEPS = ["--max_steps", "8", "--save_strategy", "no", "--lr_scheduler_type", "linear"]


def stage1_flags(assets, data, out, *extra: str) -> list[str]:
    return train_flags(assets, data, out, stage=1, extra=list(extra))


class ProjectorAfterEachStep(TrainerCallback):
    """The projector's weights when training begins (step 0) and after every optimizer step."""

    def __init__(self):
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def keep(self, step, model) -> None:
        self.weights[step] = {n: p.detach().clone() for n, p in model.mm_projector.named_parameters()}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.keep(0, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.keep(state.global_step, model)

    def same(self, a: int, b: int) -> bool:
        return all(torch.equal(self.weights[a][n], self.weights[b][n]) for n in self.weights[a])


class InfiniteGradientAt(TrainerCallback):
    """Makes one projector weight's gradient infinite during optimizer step `step` (the loss stays
    finite): what an fp16 overflow in the backward pass looks like."""

    def __init__(self, step: int):
        self.step, self.active, self.hooked = step, False, False

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if not self.hooked:
            next(model.mm_projector.parameters()).register_hook(lambda g: g * math.inf if self.active else g)
            self.hooked = True
        self.active = state.global_step == self.step - 1


def skipped_messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Skipped: no update" in r.getMessage()]


def test_step_with_a_nan_sample_is_not_applied_and_is_logged_with_the_sample_id(tiny_assets, tiny_data, tmp_path, caplog):
    record = ProjectorAfterEachStep()
    with nan_images_for({"cap5"}), caplog.at_level(logging.WARNING, logger="llava.train.step_guard"):
        trainer = train(stage1_flags(tiny_assets, tiny_data, tmp_path, *EIGHT_STEPS), callbacks=[record])
    messages = skipped_messages(caplog)
    assert len(messages) == 1 and "loss nan on rank 0" in messages[0]
    assert re.search(r"samples with a non-finite loss: (cap\d+, )?cap5\b", messages[0]), messages[0]
    bad = int(re.match(r"step (\d+):", messages[0]).group(1))
    assert record.same(bad, bad - 1)  # no weight update at the bad step
    assert all(not record.same(step, step - 1) for step in range(1, 9) if step != bad)
    # The learning-rate schedule holds at the bad step: the next step uses the bad step's rate.
    rates = [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]
    assert all((rates[i] == rates[i - 1]) == (i == bad) for i in range(1, 8)), (bad, rates)
    # The optimizer state saw one update fewer than the number of steps.
    steps_taken = {int(state["step"]) for state in trainer.optimizer.state.values()}
    assert steps_taken == {7}
    assert all(torch.isfinite(w).all() for w in record.weights[8].values())


def test_bad_steps_in_a_row_stop_the_run_naming_steps_samples_and_the_last_good_checkpoint(
    tiny_assets, tiny_data, tmp_path, capsys
):
    flags = stage1_flags(tiny_assets, tiny_data, tmp_path, "--max_steps", "8", "--save_strategy", "steps",
                         "--save_steps", "1", "--learning_rate", "1e30", "--max_bad_steps", "3")
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert "step 4: 3 bad step(s) in a row (--max_bad_steps 3)" in err
    for step in (2, 3, 4):
        assert re.search(rf"step {step}: loss nan on rank 0 and gradient norm nan; samples with a non-finite "
                         rf"loss: cap\d+, cap\d+", err), err[-2000:]
    assert f"The last good checkpoint is {tmp_path / 'checkpoint-1'}" in err
    # No checkpoint during the bad steps (the last good one stays the newest), no final save.
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-1"]
    assert not (tmp_path / MM_PROJECTOR_FILE).exists()


def test_max_bad_steps_1_stops_at_the_first_bad_step(tiny_assets, tiny_data, tmp_path, capsys):
    flags = stage1_flags(tiny_assets, tiny_data, tmp_path, "--max_steps", "4", "--save_strategy", "steps",
                         "--save_steps", "1", "--learning_rate", "1e30", "--max_bad_steps", "1")
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "step 2: 1 bad step(s) in a row (--max_bad_steps 1)" in err
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-1"]


def test_max_bad_steps_below_1_is_refused_before_loading(tiny_assets, tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(stage1_flags(tiny_assets, tiny_data, tmp_path, "--max_bad_steps", "0"))
    assert exit_info.value.code == 2 and "--max_bad_steps 0: must be at least 1" in capsys.readouterr().err


@pytest.fixture()
def cpu_loss_scaler(monkeypatch):
    """An fp16 loss scaler (torch's GradScaler on the CPU) in the trainer's accelerator: accelerate
    only makes one with CUDA, and its skip logic is the same."""
    created = []
    original = LLaVATrainer.create_accelerator_and_postprocess

    def with_scaler(self):
        original(self)
        self.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        created.append(self.accelerator.scaler)

    monkeypatch.setattr(LLaVATrainer, "create_accelerator_and_postprocess", with_scaler)
    return created


def test_fp16_loss_scaler_skip_is_not_counted_as_a_bad_step(tiny_assets, tiny_data, tmp_path, caplog, cpu_loss_scaler):
    record = ProjectorAfterEachStep()
    flags = stage1_flags(tiny_assets, tiny_data, tmp_path, "--max_steps", "4", "--save_strategy", "no",
                         "--max_bad_steps", "1")
    with caplog.at_level(logging.WARNING, logger="llava.train.step_guard"):
        train(flags, callbacks=[record, InfiniteGradientAt(2)])
    assert any("step 2: gradient overflow" in r.getMessage() and "loss scaler skipped" in r.getMessage()
               for r in caplog.records)
    assert not skipped_messages(caplog)
    assert record.same(2, 1) and not record.same(3, 2)  # the scaler skipped step 2; training went on
    assert cpu_loss_scaler[0].get_scale() == 2.0**15  # and lowered its scale once


def test_infinite_gradient_without_a_loss_scaler_is_a_bad_step(tiny_assets, tiny_data, tmp_path, capsys):
    flags = stage1_flags(tiny_assets, tiny_data, tmp_path, "--max_steps", "4", "--save_strategy", "no",
                         "--max_bad_steps", "1")
    with pytest.raises(SystemExit) as exit_info:
        main(flags, callbacks=[InfiniteGradientAt(2)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and re.search(r"step 2: gradient norm (inf|nan); samples of the step: cap", err)


def judge(guard: StepGuard, step: int, loss: float, norm: float, loss_scaling: bool = False):
    guard.record([f"s{step}"], torch.tensor(loss))
    return guard.decide(step, norm, overflowed=False, loss_scaling=loss_scaling, device="cpu")


def test_a_good_step_ends_the_run_of_bad_steps(tmp_path):
    guard = StepGuard(max_bad_steps=2, output_dir=str(tmp_path))
    assert judge(guard, 1, math.nan, math.nan).bad
    assert not judge(guard, 2, 0.5, 1.0).bad
    assert judge(guard, 3, math.inf, 1.0).bad  # one in a row again: no stop
    with pytest.raises(BadStepsError, match=r"(?s)step 4: 2 bad step\(s\) in a row.*step 3: loss inf.*s3.*"
                                            r"step 4: gradient norm nan; samples of the step: s4"):
        judge(guard, 4, 0.5, math.nan)


def test_loss_scaler_overflow_neither_counts_nor_ends_a_run_of_bad_steps(tmp_path):
    guard = StepGuard(max_bad_steps=2, output_dir=str(tmp_path))
    assert judge(guard, 1, math.nan, math.nan, loss_scaling=True).bad  # a non-finite loss is bad even in fp16
    assert judge(guard, 2, 0.5, math.inf, loss_scaling=True).scaler_skip
    with pytest.raises(BadStepsError, match="step 3: 2 bad step"):
        judge(guard, 3, math.nan, 1.0, loss_scaling=True)
