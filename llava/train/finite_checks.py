"""Non-finite weights are never saved: a checkpoint is marked complete only if every trainable
weight is finite, and the final save refuses non-finite weights.

HF's Trainer logs a NaN loss as a finite one (`logging_nan_inf_filter` replaces it by the running
mean) and applies a NaN gradient. Here a step whose loss or gradient norm is not finite is never
applied (`llava.train.step_guard` skips it, and stops the run after `--max_bad_steps` in a row);
this module is the last line: weights that went bad anyway (for instance through a kernel that
writes NaN without a NaN loss) cannot reach a checkpoint that resume would trust.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from llava.model.zero3 import is_partitioned
from llava.train.collectives import on_any_rank


class NonFiniteTrainingError(RuntimeError):
    """The loss, the gradient norm or the weights are NaN or infinite."""


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
