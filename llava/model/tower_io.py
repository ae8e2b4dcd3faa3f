"""Read and write a trained vision tower beside `mm_projector.bin`: `vision_tower.safetensors`, the
whole tower (trained and frozen tensors alike), keys `vision_tower.*` as in the model."""

from __future__ import annotations

import logging
import os

import torch.nn as nn
from safetensors.torch import load_file, save_file

from llava.model.zero3 import gathered_state_dict, load_state_dict_gathered

logger = logging.getLogger(__name__)

VISION_TOWER_PREFIX = "vision_tower."


def save_vision_tower(tower: nn.Module, path: str, is_main_process: bool = True) -> None:
    """Write the tower's state dict to `path`; every rank must call this (ZeRO-3 gathers)."""
    state = {VISION_TOWER_PREFIX + k: v.contiguous() for k, v in gathered_state_dict(tower).items()}
    if is_main_process:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        save_file(state, path, metadata={"format": "pt"})
        logger.info("saved vision tower (%d tensors) to %s", len(state), path)


def load_vision_tower_weights(tower: nn.Module, path: str) -> None:
    """Load a file written by `save_vision_tower` into `tower`: every tensor, strictly (a file that
    does not fit the tower named by config.json is an error, not a partial load)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (the vision tower of a run that trained it)")
    raw = load_file(path)
    foreign = sorted(k for k in raw if not k.startswith(VISION_TOWER_PREFIX))
    if foreign:
        raise ValueError(f"{path}: tensors {foreign[:5]} are not vision-tower tensors ('{VISION_TOWER_PREFIX}*')")
    try:
        load_state_dict_gathered(tower, {k.removeprefix(VISION_TOWER_PREFIX): v for k, v in raw.items()}, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit the vision tower named in its config.json (mm_vision_tower): {err}") from err
    logger.info("loaded vision tower (%d tensors) from %s", len(raw), path)
