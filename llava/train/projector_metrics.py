"""Trainer callbacks that receive the projector's per-image metrics (`ProjectorOutput.metrics`).

A projector plugin declares such callbacks in its `ProjectorSpec.callbacks`; `llava/train/train.py`
hands them to the trainer, which after every training forward calls `on_projector_metrics` with the
batch's metrics and each image's `lang` (from the data item; None when it has none), and before
every log line merges what `pop_logs` returns into the logged values (and so into wandb).
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback


class ProjectorMetricsCallback(TrainerCallback):
    """Base class: accumulate per-image metrics between log steps, report them as flat floats."""

    def on_projector_metrics(self, metrics: dict[str, torch.Tensor], langs: list[str | None]) -> None:
        """metrics: name -> (num_images, ...) detached tensors; langs: one entry per image."""

    def pop_logs(self) -> dict[str, float]:
        """Values to log now (e.g. `routing/zh/entropy`); the accumulated state is reset."""
        return {}
