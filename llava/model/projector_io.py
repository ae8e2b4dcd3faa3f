"""Read and write stage-1 projector weights in upstream LLaVA's `mm_projector.bin` layout."""

from __future__ import annotations

import logging
import os

import torch
import torch.nn as nn

from llava.constants import MM_PROJECTOR_PREFIX
from llava.model.zero3 import full_shape, gathered_state_dict, is_partitioned, load_state_dict_gathered

logger = logging.getLogger(__name__)


def projector_state_dict_for_upstream(projector: nn.Module) -> dict[str, torch.Tensor]:
    """Keys as upstream LLaVA writes them: `model.mm_projector.0.weight`, ... (gathered under ZeRO-3)."""
    return {MM_PROJECTOR_PREFIX + k: v for k, v in gathered_state_dict(projector).items()}


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
    """Load stage-1 weights; tensors the file lacks (a plugin's new modules) keep their init.

    Works on ZeRO-3-partitioned parameters (upstream fails there with "size mismatch ...
    torch.Size([0])"): shapes are checked against the real shapes, and the copy happens inside a
    gather whose rank-0 result is re-partitioned. Every rank must call it.
    """
    weights = projector.map_pretrained_keys(read_projector_file(path))
    own = {name: tensor.shape for name, tensor in projector.state_dict().items()}
    own.update({name: full_shape(p) for name, p in projector.named_parameters() if name in own})
    unexpected = sorted(set(weights) - set(own))
    mismatched = [k for k in weights if k in own and weights[k].shape != own[k]]
    if unexpected or mismatched:
        raise ValueError(
            f"--pretrain_mm_mlp_adapter {path} does not fit --mm_projector_type: unexpected keys {unexpected}, "
            f"shape mismatches {[(k, tuple(weights[k].shape), tuple(own[k])) for k in mismatched]}"
        )
    missing = sorted(set(own) - set(weights))
    load_state_dict_gathered(projector, weights, strict=False)
    partitioned = any(is_partitioned(p) for p in projector.parameters())
    logger.info(
        "loaded %d projector tensors from %s%s", len(weights), path, " into ZeRO-3 partitions" if partitioned else ""
    )
    if missing:
        logger.info("projector tensors not in %s keep their initialisation: %s", path, missing)
