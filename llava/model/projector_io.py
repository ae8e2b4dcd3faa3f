"""Read and write stage-1 projector weights in upstream LLaVA's `mm_projector.bin` layout."""

from __future__ import annotations

import logging
import os

import torch
import torch.nn as nn

from llava.constants import MM_PROJECTOR_PREFIX

logger = logging.getLogger(__name__)


def projector_state_dict_for_upstream(projector: nn.Module) -> dict[str, torch.Tensor]:
    """Keys as upstream LLaVA writes them: `model.mm_projector.0.weight`, ..."""
    return {MM_PROJECTOR_PREFIX + k: v.detach().cpu().clone() for k, v in projector.state_dict().items()}


def read_projector_file(path: str) -> dict[str, torch.Tensor]:
    """Projector tensors from `mm_projector.bin` (weights_only) or a `.safetensors` file, keys relative to the projector."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--pretrain_mm_mlp_adapter {path}: no such file")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        raw = load_file(path)
    else:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    # Upstream keeps everything after 'mm_projector.'; accept 'model.mm_projector.x', 'mm_projector.x'.
    weights = {k.split("mm_projector.", 1)[1]: v for k, v in raw.items() if "mm_projector." in k}
    if not weights:
        raise ValueError(f"--pretrain_mm_mlp_adapter {path}: no 'mm_projector.*' tensors in the file")
    return weights


def load_projector_weights(projector: nn.Module, path: str) -> None:
    """Load stage-1 weights; tensors the file lacks (a plugin's new modules) keep their init."""
    weights = read_projector_file(path)
    own = projector.state_dict()
    unexpected = sorted(set(weights) - set(own))
    mismatched = [k for k in weights if k in own and weights[k].shape != own[k].shape]
    if unexpected or mismatched:
        raise ValueError(
            f"--pretrain_mm_mlp_adapter {path} does not fit --mm_projector_type: unexpected keys {unexpected}, "
            f"shape mismatches {[(k, tuple(weights[k].shape), tuple(own[k].shape)) for k in mismatched]}"
        )
    missing = sorted(set(own) - set(weights))
    projector.load_state_dict(weights, strict=False)
    logger.info("loaded %d projector tensors from %s", len(weights), path)
    if missing:
        logger.info("projector tensors not in %s keep their initialisation: %s", path, missing)
