"""LLaVATrainer's public extension points on their own: the modality-grouped training DataLoader,
the scheduler held on a bad step, the callbacks' place, and `--save_total_limit` kept out of HF's
save (the end-to-end behaviours are in test_bad_steps, test_preemption, test_disk_full,
test_damaged_checkpoints and test_resume)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset
from transformers import DefaultFlowCallback, TrainerCallback

from llava.train.arguments import TrainingArguments
from llava.train.samplers import modality_grouped_indices
from llava.train.step_guard import StepGuard, StepVerdict
from llava.train.trainer import LLaVATrainer
from llava.train.trainer_callbacks import CheckpointMarkerCallback, HeldScheduler, StepGuardCallback

LENGTHS = [5, -3, 7, -2, 4, 9, -8, 6, -1, 3, 2, -4]


class Lengths(Dataset):
    lengths = LENGTHS

    def __len__(self):
        return len(LENGTHS)

    def __getitem__(self, i):
        return {"i": i}


def make_trainer(tmp_path, callbacks=None, **flags) -> LLaVATrainer:
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, **flags)
    return LLaVATrainer(
        model=torch.nn.Linear(2, 1),
        args=args,
        train_dataset=Lengths(),
        data_collator=lambda rows: {"ids": [r["i"] for r in rows]},
        callbacks=callbacks,
    )


def test_modality_grouped_loader_yields_the_samplers_order_in_batches(tmp_path):
    trainer = make_trainer(tmp_path, group_by_modality_length=True, per_device_train_batch_size=2,
                           gradient_accumulation_steps=2, seed=3)
    order = [i for batch in trainer.get_train_dataloader() for i in batch["ids"]]
    expected = modality_grouped_indices(LENGTHS, 4, 1, torch.Generator().manual_seed(3))
    assert order == expected and sorted(order) == list(range(len(LENGTHS)))
    for start in range(0, 8, 4):  # the full global batches are all-image or all-text
        assert len({LENGTHS[i] > 0 for i in order[start : start + 4]}) == 1


def test_without_grouping_the_trainers_own_loader_is_used(tmp_path):
    trainer = make_trainer(tmp_path, per_device_train_batch_size=3)
    batches = list(trainer.get_train_dataloader())
    assert [len(b["ids"]) for b in batches] == [3, 3, 3, 3]
    assert sorted(i for b in batches for i in b["ids"]) == list(range(len(LENGTHS)))


@pytest.mark.parametrize("flag", ["remove_unused_columns", "auto_find_batch_size"])
def test_grouping_refuses_flags_its_loader_cannot_honour(tmp_path, flag):
    with pytest.raises(ValueError, match=f"--group_by_modality_length.*--{flag}"):
        make_trainer(tmp_path, group_by_modality_length=True, **{flag: True})


def test_save_total_limit_is_applied_by_the_marker_callback_not_by_hf(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_total_limit=2)
    trainer = LLaVATrainer(model=torch.nn.Linear(2, 1), args=args, train_dataset=Lengths())
    assert trainer.checkpoint_limit == 2 and trainer.args.save_total_limit is None
    assert args.save_total_limit == 2  # the caller's arguments are left as they were


def test_our_callbacks_follow_the_flow_callback_and_precede_the_callers(tmp_path):
    class Caller(TrainerCallback):
        pass

    kinds = [type(cb) for cb in make_trainer(tmp_path, callbacks=[Caller()]).callback_handler.callbacks]
    flow = kinds.index(DefaultFlowCallback)
    assert kinds[flow + 1 : flow + 3] == [CheckpointMarkerCallback, StepGuardCallback]
    assert kinds.index(Caller) > flow + 2


def test_held_scheduler_does_not_advance_after_a_bad_step(tmp_path):
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    guard = StepGuard(3, str(tmp_path))
    scheduler = HeldScheduler(torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step)), guard)
    assert HeldScheduler.applies_to(scheduler.scheduler)
    assert not HeldScheduler.applies_to(torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer))
    optimizer.step()
    guard.verdict = StepVerdict(1)
    scheduler.step()
    assert scheduler.get_last_lr() == [0.5]
    guard.verdict = StepVerdict(2, bad=True)
    scheduler.step()
    assert scheduler.get_last_lr() == [0.5] and optimizer.param_groups[0]["lr"] == 0.5
    assert scheduler.state_dict()["last_epoch"] == 1
    guard.verdict = None
    scheduler.step()
    assert scheduler.get_last_lr() == [pytest.approx(1 / 3)]
