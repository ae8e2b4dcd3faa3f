"""The built-in projectors of upstream LLaVA: `identity`, `linear` and `mlp{N}x_gelu`.

Parameter names are upstream's (`mm_projector.weight` for `linear`; `mm_projector.0.weight`,
`mm_projector.2.weight`, ... for the MLPs), so upstream checkpoints and `mm_projector.bin` files load.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from llava.model.multimodal_projector.base import Projector, ProjectorOutput


def _emits_cls(config: object) -> bool:
    return getattr(config, "mm_vision_select_feature", None) == "cls_patch"


def build_mlp_layers(in_features: int, out_features: int, depth: int) -> nn.Sequential:
    """LLaVA's `mlp{depth}x_gelu` layers: Linear, then (GELU, Linear) * (depth - 1)."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_features, out_features)]
    return nn.Sequential(*layers)


class IdentityProjector(Projector):
    """`identity`: vision features pass unchanged; needs mm_hidden_size == hidden_size."""

    def __init__(self, config: object) -> None:
        super().__init__(emits_cls=_emits_cls(config))
        if config.mm_hidden_size != config.hidden_size:
            raise ValueError(
                f"--mm_projector_type identity needs the vision width ({config.mm_hidden_size}) to equal the "
                f"LLM width ({config.hidden_size}); use linear or mlp2x_gelu"
            )

    def forward(self, image_features, text_embeds=None, text_mask=None) -> ProjectorOutput:
        return ProjectorOutput(image_features)


class LinearProjector(Projector):
    """`linear`: one affine map D -> C (LLaVA-1's projector)."""

    def __init__(self, config: object) -> None:
        super().__init__(emits_cls=_emits_cls(config))
        self.weight = nn.Parameter(torch.empty(config.hidden_size, config.mm_hidden_size))
        self.bias = nn.Parameter(torch.empty(config.hidden_size))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """nn.Linear's default initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, image_features, text_embeds=None, text_mask=None) -> ProjectorOutput:
        return ProjectorOutput(F.linear(image_features, self.weight, self.bias))


class MLPProjector(Projector):
    """`mlp{N}x_gelu`: N Linear layers with GELU between them (`mlp2x_gelu` is LLaVA-1.5's).

    The layers are registered at the top level (`0`, `1`, `2`, ...) to keep upstream's key names.
    """

    def __init__(self, config: object, depth: int) -> None:
        super().__init__(emits_cls=_emits_cls(config))
        for name, layer in build_mlp_layers(config.mm_hidden_size, config.hidden_size, depth).named_children():
            self.add_module(name, layer)

    def project(self, image_features: torch.Tensor) -> torch.Tensor:
        """(num_images, M, D) -> (num_images, M, C)."""
        hidden = image_features
        for layer in self.children():
            hidden = layer(hidden)
        return hidden

    def forward(self, image_features, text_embeds=None, text_mask=None) -> ProjectorOutput:
        return ProjectorOutput(self.project(image_features))
