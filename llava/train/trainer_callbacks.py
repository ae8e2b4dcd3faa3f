"""The fault handling of `LLaVATrainer` on transformers' public extension points: `TrainerCallback`
hooks and a learning-rate scheduler that holds on a skipped step.

- `StepGuardCallback`: `on_pre_optimizer_step` (gradients clipped, optimizer not yet stepped) asks the
  step guard for its verdict on every rank; a bad step's gradients are dropped, so the optimizer
  leaves every parameter and its state untouched, and `HeldScheduler` does not advance the schedule.
  `on_step_end` (after DefaultFlowCallback has set the flags) cancels the save of a bad step, or, on a
  preemption signal, asks for a checkpoint and the end of training; `on_save` then names it.
- `CheckpointMarkerCallback`: `on_save` (HF has written the checkpoint) writes the LoRA run's
  non-LoRA trainables, waits for every rank, writes the completion marker with every file's size and
  SHA-256, and only then deletes old checkpoints beyond `--save_total_limit`.
"""

from __future__ import annotations

import os

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from transformers import TrainerCallback
from transformers.optimization import GreedyLR
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from llava.train.checkpoint_marker import file_records, mark_complete
from llava.train.collectives import barrier
from llava.train.finite_checks import NonFiniteTrainingError
from llava.train.lora import save_non_lora_trainables
from llava.train.preemption import TrainingPreempted
from llava.train.step_guard import StepGuard


def checkpoint_dir(output_dir: str, step: int) -> str:
    return os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")


def local_grad_norm(model: torch.nn.Module) -> float | None:
    """The 2-norm of this rank's gradients (of its shards, under FSDP: a non-finite one on any rank
    is seen by the step guard's gather), or None without gradients."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    grads = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else None


class HeldScheduler:
    """A per-step learning-rate scheduler whose `step()` does nothing after a bad step (the step
    guard's verdict on the step that just ran); everything else is the wrapped scheduler's."""

    def __init__(self, scheduler: LRScheduler, guard: StepGuard):
        self.scheduler, self.guard = scheduler, guard

    @staticmethod
    def applies_to(scheduler) -> bool:
        """Stepped once per optimizer step by the Trainer (plateau schedulers are stepped on metrics)."""
        return isinstance(scheduler, LRScheduler) and not isinstance(scheduler, (ReduceLROnPlateau, GreedyLR))

    def step(self, *args, **kwargs) -> None:
        verdict = self.guard.verdict
        if verdict is not None and verdict.bad:
            return
        self.scheduler.step(*args, **kwargs)

    def __getattr__(self, name: str):
        if name == "scheduler":  # not set yet (copy, unpickling)
            raise AttributeError(name)
        return getattr(self.scheduler, name)


class StepGuardCallback(TrainerCallback):
    """The step guard at its three points of the step (see the module docstring)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self._stopping: TrainingPreempted | None = None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        trainer, guard = self.trainer, self.trainer.step_guard
        if trainer.is_deepspeed_enabled:
            # DeepSpeed stepped inside the backward pass and skipped non-finite gradients itself
            overflowed = trainer.accelerator.optimizer_step_was_skipped
            grad_norm = trainer.model_wrapped.get_global_grad_norm()
        else:
            overflowed, grad_norm = False, local_grad_norm(trainer.model)
        verdict = guard.decide(state.global_step + 1, grad_norm, overflowed, trainer.uses_loss_scaling, args.device)
        if trainer.is_deepspeed_enabled and verdict.bad and not overflowed:
            raise NonFiniteTrainingError(
                f"{guard.streak[-1]}; DeepSpeed found the gradients finite and applied the update, "
                "which cannot be undone, so the run stops here. Rerun the command to resume from the newest "
                "complete checkpoint"
            )
        if verdict.bad and not trainer.is_deepspeed_enabled:
            trainer.model.zero_grad(set_to_none=True)  # optimizers leave parameters without a gradient untouched

    def on_step_end(self, args, state, control, **kwargs):
        """No checkpoint during a run of bad steps (the newest stays the last good one); after a
        preemption signal, a checkpoint and the end of training."""
        guard = self.trainer.step_guard
        verdict, guard.verdict = guard.verdict, None
        if verdict is None:
            return control
        if verdict.bad:
            control.should_save = False
        if verdict.stop_signal is not None:
            control.should_save = control.should_training_stop = True
            self._stopping = TrainingPreempted(
                verdict.stop_signal, verdict.step, checkpoint_dir(args.output_dir, verdict.step)
            )
        return control

    def on_save(self, args, state, control, **kwargs):
        if self._stopping is not None:
            self.trainer.preempted, self._stopping = self._stopping, None
        return control


class CheckpointMarkerCallback(TrainerCallback):
    """Completes the checkpoint HF just wrote (see the module docstring). Must run before any other
    callback's `on_save` that expects a complete checkpoint."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        trainer = self.trainer
        folder = checkpoint_dir(args.output_dir, state.global_step)
        if trainer.is_lora:
            save_non_lora_trainables(trainer.model, folder, args.should_save)
        barrier()
        files = file_records(folder)
        if args.should_save:
            mark_complete(folder, state.global_step, files)
        trainer.checkpoint_in_progress = None
        if args.should_save:
            rotate_checkpoints(args.output_dir, trainer.checkpoint_limit, state.best_model_checkpoint, use_mtime=True)
        return control
