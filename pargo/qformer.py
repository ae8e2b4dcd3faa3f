"""ParGo's Q-Former projector as a plain `nn.Module`, free of the llava core.

`pargo.projector.PargoProjector` is this module plus the core's projector contract; `python -m
llava.model.convert to-hf` copies this file (with `layers.py` and `masks.py`, which it imports
relatively) into exported folders, where transformers' remote-code loader runs the same code.

`settings` is a `pargo.config.PargoSettings`, or any object with its fields (an exported folder keeps
them in its config.json).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn as nn

from .layers import LAYER_NORM_EPS, QformerLayer, QueryEmbeddings
from .masks import WindowLayout, cross_attention_mask, self_attention_mask, window_layout


class PargoQformer(nn.Module):
    """(num_images, N or 1+N, D) vision features -> (num_images, P + G, C): partial queries first.

    Row 0 of the input is dropped when `settings.input_has_cls` (ParGo reads patches only). The patches
    are layer-normed (BLIP-2's `ln_vision`), the P + G learned queries run through the Q-Former layers
    under the masks of `masks.py` (the same in every layer), and a Linear maps the Q-Former width to C.
    """

    def __init__(self, settings: object) -> None:
        super().__init__()
        self.settings = settings
        self.vision_norm = nn.LayerNorm(settings.vision_hidden_size, eps=LAYER_NORM_EPS)
        self.queries = QueryEmbeddings(settings.num_partial + settings.num_global, settings.width)
        self.layers = nn.ModuleList(
            QformerLayer(settings.width, settings.vision_hidden_size, settings.heads) for _ in range(settings.layers)
        )
        self.out_proj = nn.Linear(settings.width, settings.hidden_size)

    def layout(self, num_patches: int) -> WindowLayout | None:
        """The windows of the partial queries on a grid of `num_patches` (validated; cached)."""
        return window_layout(num_patches, self.settings.num_partial, self.settings.window)

    def qformer_tokens(self, image_features: torch.Tensor) -> torch.Tensor:
        patches = image_features[:, 1:] if self.settings.input_has_cls else image_features
        num_images, num_patches, _ = patches.shape
        device = patches.device
        cross_mask = cross_attention_mask(self.layout(num_patches), num_patches, self.settings.num_global, device)
        self_mask = self_attention_mask(self.settings.num_partial, self.settings.num_global, device)
        patches = self.vision_norm(patches)
        hidden = self.queries(num_images)
        for layer in self.layers:
            hidden = layer(hidden, patches, self_mask, cross_mask)
        return self.out_proj(hidden)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.qformer_tokens(image_features)


def build_remote_projector(spec: dict, build_base=None) -> PargoQformer:
    """The exported folder's ParGo module for `spec` (config.json `parrot_projector`, or its `base`)."""
    settings = dict(spec["settings"])
    if settings.get("window") is not None:
        settings["window"] = tuple(settings["window"])  # JSON gives a list; the mask caches need a tuple
    return PargoQformer(SimpleNamespace(**settings))
