"""The timed training step the benchmarks share (imported by the scripts beside it)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timed_training_step(model: torch.nn.Module) -> Callable[[dict], float]:
    """A step function for `model` with its own AdamW: forward on the given inputs, backward, optimizer
    step, gradients cleared. It returns the seconds the step took."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step(inputs: dict) -> float:
        start = time.perf_counter()
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step
