"""One verdict per optimizer step, reached by every rank together: step, skip a bad step, or stop.

Once a step's gradients exist and before the optimizer uses them, every rank shares, in one
all_gather of three numbers: whether its loss was NaN or infinite in a micro-batch of the step,
whether the gradient norm is (gradients are reduced across ranks, so the norm is the same
everywhere), and the preemption signal it received, if any. So every rank reaches the same verdict
and none diverges from the others:

- **good**: the optimizer steps;
- **loss-scaler skip** (fp16 only): the gradients overflowed with a finite loss; the loss scaler
  skips this update and lowers its scale, which is its normal working. Logged, not a bad step;
- **bad**: a non-finite loss on any rank, or a non-finite gradient norm outside fp16 loss scaling.
  The update is skipped (weights, optimizer state and learning-rate schedule unchanged; the batch
  still counts as a step, so a resumed run sees the same data) and the step is logged with the ids
  of its samples (of the micro-batches whose loss was not finite, when that is known). No
  checkpoint is written during a run of bad steps, so the newest complete checkpoint is the last
  good one. At the `--max_bad_steps`-th bad step in a row the run stops with BadStepsError, naming
  the steps, their samples and that checkpoint;
- **stop**: a preemption signal reached some rank; the trainer saves after this step and exits.
"""

from __future__ import annotations

import logging
import math
import signal
from dataclasses import dataclass

import torch

from llava.train.checkpoints import latest_complete_checkpoint
from llava.train.collectives import gather_objects, gather_rows, rank_and_world
from llava.train.finite_checks import NonFiniteTrainingError
from llava.train.preemption import PreemptionListener

logger = logging.getLogger(__name__)

_IDS_SHOWN = 16


class BadStepsError(NonFiniteTrainingError):
    """`--max_bad_steps` bad steps in a row."""


@dataclass
class StepVerdict:
    step: int
    bad: bool = False
    scaler_skip: bool = False
    stop_signal: str | None = None


def _ids_text(ids: list) -> str:
    shown = ", ".join(str(i) for i in ids[:_IDS_SHOWN])
    return shown + (f" and {len(ids) - _IDS_SHOWN} more" if len(ids) > _IDS_SHOWN else "")


class StepGuard:
    """Collects each micro-batch's loss and sample ids on this rank (`record`), and decides once per
    optimizer step, with every other rank (`decide`, a collective)."""

    def __init__(self, max_bad_steps: int, output_dir: str, listener: PreemptionListener | None = None):
        self.max_bad_steps = max_bad_steps
        self.output_dir = output_dir
        self.listener = listener or PreemptionListener([])
        self.streak: list[str] = []  # the bad steps in a row so far, described
        self.verdict: StepVerdict | None = None  # of the step that just ran, until the trainer takes it
        self._losses: list[torch.Tensor] = []
        self._ids: list[list | None] = []

    def record(self, ids: list | None, loss: torch.Tensor) -> None:
        """A micro-batch's sample ids and loss (kept on its device: no sync until `decide`)."""
        self._ids.append(None if ids is None else list(ids))
        self._losses.append(loss.detach().float().reshape(()))

    def decide(
        self, step: int, grad_norm: float | torch.Tensor | None, overflowed: bool, loss_scaling: bool, device
    ) -> StepVerdict:
        """The verdict on optimizer step `step` (see the module docstring). `overflowed`: the optimizer
        (DeepSpeed) found non-finite gradients itself; `loss_scaling`: an fp16 loss scaler is active.
        Raises BadStepsError at the `max_bad_steps`-th bad step in a row. Every rank must call it."""
        losses = torch.stack(self._losses).tolist() if self._losses else []
        finite = [math.isfinite(loss) for loss in losses]
        first_bad = next((loss for loss in losses if not math.isfinite(loss)), 0.0)
        norm = None if grad_norm is None else float(grad_norm)
        norm_bad = overflowed or (norm is not None and not math.isfinite(norm))
        received = signal.Signals[self.listener.received].value if self.listener.received else 0
        rows = gather_rows([float(not all(finite)), first_bad, float(norm_bad), float(received)], device)
        bad_losses = {rank: row[1] for rank, row in enumerate(rows) if row[0]}
        norm_bad = any(row[2] for row in rows)
        signals = sorted({signal.Signals(int(row[3])).name for row in rows if row[3]})
        verdict = StepVerdict(step, stop_signal=" and ".join(signals) or None)
        if bad_losses or (norm_bad and not loss_scaling):
            verdict.bad = True
            self._bad_step(verdict, bad_losses, norm, finite)
        elif norm_bad:
            verdict.scaler_skip = True
            self._log(f"step {step}: gradient overflow (norm {norm}); the fp16 loss scaler skipped this update "
                      "and lowers its scale (not a bad step)")
        else:
            self.streak.clear()
        self._losses.clear()
        self._ids.clear()
        self.verdict = verdict
        return verdict

    def _bad_step(self, verdict: StepVerdict, bad_losses: dict[int, float], norm: float | None, finite: list[bool]) -> None:
        """Describe the step with its samples (a collective), log it or raise BadStepsError."""
        micro_batches = gather_objects(list(zip(self._ids, finite)))
        suspects = [i for rank in bad_losses for ids, ok in micro_batches[rank] if not ok for i in ids or []]
        everyone = [i for batches in micro_batches for ids, _ in batches for i in ids or []]
        causes = [", ".join(f"loss {loss} on rank {rank}" for rank, loss in bad_losses.items()),
                  f"gradient norm {norm}" if norm is not None and not math.isfinite(norm) else ""]
        samples = (f"samples with a non-finite loss: {_ids_text(suspects)}" if suspects
                   else f"samples of the step: {_ids_text(everyone)}" if everyone else "sample ids unknown")
        self.streak.append(f"step {verdict.step}: {' and '.join(c for c in causes if c)}; {samples}")
        if len(self.streak) >= self.max_bad_steps:
            raise BadStepsError(self._stop_message(verdict.step))
        self._log(f"{self.streak[-1]}. Skipped: no update of the weights, the optimizer state or the learning "
                  f"rate ({len(self.streak)} bad step(s) in a row; the run stops at --max_bad_steps "
                  f"{self.max_bad_steps})")

    def _stop_message(self, step: int) -> str:
        newest = latest_complete_checkpoint(self.output_dir)
        where = (f"The last good checkpoint is {newest}: rerun the command to resume from it" if newest
                 else "There is no complete checkpoint: rerun the command to start over")
        steps = "\n".join(f"  {line}" for line in self.streak)
        return (
            f"step {step}: {len(self.streak)} bad step(s) in a row (--max_bad_steps {self.max_bad_steps}): the loss "
            f"or the gradient norm is NaN or infinite, so the run stops here and saves nothing more:\n{steps}\n"
            f"{where}, with a lower --learning_rate (or a --max_grad_norm, or bf16 instead of fp16), after checking "
            "those samples; or raise --max_bad_steps to skip more steps"
        )

    def _log(self, message: str) -> None:
        if rank_and_world()[0] == 0:
            logger.warning(message)
