"""Vision tower wrapper for CLIP, Chinese-CLIP and SigLIP vision encoders.

Z_v = hidden state of layer `mm_vision_select_layer` (LLaVA uses -2, the penultimate layer).
The tower always returns the CLS row first, (num_images, 1 + N, D); the multimodal model decides
whether to keep it (`mm_vision_select_feature cls_patch`, or a projector that routes on it).
SigLIP has no CLS token: its row 0 is the mean of the selected patch features.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.nn as nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig

from llava.model.hub_kernels import hub_kernel_kwargs
from llava.model.zero3 import gathered, is_partitioned, load_state_dict_gathered

logger = logging.getLogger(__name__)

VISION_TOWERS_WITH_CLS = {"clip_vision_model", "chinese_clip_vision_model"}
SUPPORTED_VISION_TYPES = VISION_TOWERS_WITH_CLS | {"siglip_vision_model"}


def load_vision_config(name_or_path: str) -> PreTrainedConfig:
    """The vision sub-config of a CLIP/Chinese-CLIP/SigLIP checkpoint (full dual-encoder or vision-only)."""
    config = AutoConfig.from_pretrained(name_or_path)
    config = getattr(config, "vision_config", None) or config
    if config.model_type not in SUPPORTED_VISION_TYPES:
        raise ValueError(
            f"--vision_tower {name_or_path}: model type {config.model_type!r} is not a supported vision tower; "
            f"use a CLIP, Chinese-CLIP or SigLIP checkpoint ({', '.join(sorted(SUPPORTED_VISION_TYPES))})"
        )
    return config


class VisionTower(nn.Module):
    """Frozen-by-default CLIP/Chinese-CLIP/SigLIP encoder returning (num_images, 1 + N, D) features, CLS first."""

    def __init__(self, vision_config: PreTrainedConfig, select_layer: int):
        # No default: the layer is the config's (`LlavaConfig.mm_vision_select_layer`), decided there only.
        super().__init__()
        self.select_layer = select_layer
        self.has_cls_token = vision_config.model_type in VISION_TOWERS_WITH_CLS
        self.encoder = AutoModel.from_config(
            vision_config, attn_implementation=vision_config._attn_implementation or "sdpa"
        )
        self.encoder.requires_grad_(False)

    @property
    def config(self) -> PreTrainedConfig:
        return self.encoder.config

    @property
    def num_patches(self) -> int:
        return (self.config.image_size // self.config.patch_size) ** 2

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.encoder.parameters())

    def load_pretrained_weights(self, name_or_path: str) -> None:
        """Copy weights from a CLIP/Chinese-CLIP/SigLIP checkpoint into this (already built) tower.

        Under ZeRO-3 both the freshly loaded checkpoint and this tower are partitioned; both are
        gathered for the copy (every rank must call this).
        """
        if not os.path.exists(name_or_path):
            logger.info("loading vision tower %s from the Hugging Face cache", name_or_path)
        pretrained = type(self.encoder).from_pretrained(
            name_or_path, config=self.config, dtype=torch.float32, **hub_kernel_kwargs()
        )
        with gathered(pretrained.parameters()):
            missing, unexpected = load_state_dict_gathered(self.encoder, pretrained.state_dict(), strict=False)
        if missing:
            raise ValueError(f"--vision_tower {name_or_path}: checkpoint lacks weights {missing[:5]}...")
        partitioned = any(is_partitioned(p) for p in self.encoder.parameters())
        logger.info("loaded vision tower weights from %s%s", name_or_path, " into ZeRO-3 partitions" if partitioned else "")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (num_images, 3, H, W) -> features (num_images, 1 + N, D), row 0 = CLS."""
        dtype = next(self.encoder.parameters()).dtype
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable):
            out = self.encoder(pixel_values.to(dtype), output_hidden_states=True)
        features = out.hidden_states[self.select_layer]
        if not self.has_cls_token:
            features = torch.cat([features.mean(dim=1, keepdim=True), features], dim=1)
        return features
