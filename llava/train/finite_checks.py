"""A run whose numbers stop being finite stops loudly, and never leaves non-finite weights behind.

HF's Trainer logs a NaN loss as a finite one (`logging_nan_inf_filter` replaces it by the running
mean), applies a NaN gradient, marks the checkpoints that follow complete and exits 0. Here:

- after every optimizer step, a non-finite loss (on any rank) or gradient norm raises
  NonFiniteTrainingError before anything is logged or saved; the exception is an fp16 step that
  the loss scaler skipped (gradient overflow), which leaves the weights untouched and is logged;
- a checkpoint is marked complete only if every trainable weight is finite, and the final save
  refuses non-finite weights.

Deciding what to skip and when to give up is left to the run's fault policy; this module only makes
the failure impossible to miss and impossible to resume from.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn as nn

from llava.model.zero3 import is_partitioned
from llava.train.checkpoints import latest_complete_checkpoint


class NonFiniteTrainingError(RuntimeError):
    """The loss, the gradient norm or the weights are NaN or infinite."""


def on_any_rank(flags: list[bool], device: torch.device | str) -> list[bool]:
    """Each flag OR-ed over all ranks (a collective: every rank calls it with as many flags)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flags
    values = torch.tensor([float(flag) for flag in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


def nonfinite_trainable_parameters(model: nn.Module) -> list[str]:
    """Names of trainable parameters holding NaN or inf on this rank (its shard under ZeRO-3)."""
    names = []
    for name, param in model.named_parameters():
        values = param.ds_tensor if is_partitioned(param) else param
        if param.requires_grad and values.numel() and not bool(torch.isfinite(values.detach()).all()):
            names.append(name)
    return names


def check_weights_finite(model: nn.Module, device: torch.device | str, what: str) -> None:
    """Raise NonFiniteTrainingError when a trainable weight is not finite on any rank (collective)."""
    local = nonfinite_trainable_parameters(model)
    if on_any_rank([bool(local)], device)[0]:
        shown = ", ".join(local[:5]) + (" ..." if len(local) > 5 else "") if local else "(on another rank)"
        raise NonFiniteTrainingError(f"{what}: refused, trainable weights are NaN or infinite: {shown}")


def check_step_finite(
    step: int,
    loss: float | None,
    grad_norm: float | torch.Tensor | None,
    scaler_skipped: bool,
    device: torch.device | str,
    output_dir: str,
) -> str | None:
    """After optimizer step `step`: raise for a non-finite `loss` (the first non-finite one on this
    rank since the last step, or None) or gradient norm, naming the checkpoint in `output_dir` to
    resume from; return a warning when the fp16 loss scaler skipped a step for a gradient overflow.
    Every rank must call it (the flags are shared)."""
    norm = None if grad_norm is None else float(grad_norm)
    bad_loss, bad_norm = on_any_rank([loss is not None, norm is not None and not math.isfinite(norm)], device)
    if bad_norm and not bad_loss and scaler_skipped:
        return f"step {step}: gradient overflow (norm {norm}); the fp16 loss scaler skipped the update"
    if not (bad_loss or bad_norm):
        return None
    seen = [f"loss {loss}" if loss is not None else "", f"gradient norm {norm}" if bad_norm else ""]
    newest = latest_complete_checkpoint(output_dir)
    restart = f"resume from {newest}" if newest else "start over (there is no complete checkpoint)"
    raise NonFiniteTrainingError(
        f"step {step}: {' and '.join(s for s in seen if s) or 'loss non-finite on another rank'}: training "
        f"diverged, so it stops here and saves nothing more. {restart[0].upper()}{restart[1:]} with a lower "
        "--learning_rate (or a --max_grad_norm, or bf16 instead of fp16), and check the data of this step"
    )
