"""Projector registry: maps `config.mm_projector_type` to a module factory.

Built-in types are `identity`, `linear` and `mlp{N}x_gelu` (N >= 1 Linear layers with GELU between
them; `mlp2x_gelu` is LLaVA-1.5's). Plugins add types without touching this package, either by
calling `register_projector(name, factory)` or by declaring an entry point in the
`llava.projectors` group whose object is a factory (the entry point's name is the projector type).
Entry points are loaded lazily, the first time an unknown type is requested.

Factory contract: `factory(config) -> nn.Module`, where `config` carries at least
`mm_hidden_size` (vision width D), `hidden_size` (LLM width C), `mm_vision_select_feature` and
whatever extra fields the projector reads (for example `moe_*`).

Module contract. A plain projector is called as `projector(image_features)` with
`image_features` of shape (num_images, N, D) and returns (num_images, N_out, C).

Text guidance. A projector whose class sets `requires_text_guidance = True` is instead called as

    projector(image_features, text_embeds=text_embeds, text_mask=text_mask)

where, for each image, `text_embeds` (num_images, T, C) are the LLM word embeddings (the
`embed_tokens` output, no positions) of the prompt tokens of the sample the image belongs to, and
`text_mask` (num_images, T) is a bool mask that is True on those tokens. Prompt tokens are all
tokens except answer tokens (label != IGNORE_INDEX); padding and image sentinels are always
excluded. At inference (no labels) the whole prompt is the guidance. It is computed once per
sample, at prefill.

Vision CLS. A projector whose class sets `wants_cls_token = True` always receives the vision
CLS as row 0 of `image_features` (for towers without a CLS token, such as SigLIP, row 0 is the mean
of the selected patch features), whatever `mm_vision_select_feature` says; the projector itself
decides, from `config.mm_vision_select_feature`, whether to emit it as a visual token. Other
projectors receive row 0 = CLS only under `cls_patch`.

Auxiliary loss. After a forward pass a projector may expose `aux_loss` (a scalar tensor, already
scaled by its coefficient) which the model adds to the language-modeling loss; `None` means none.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from importlib.metadata import entry_points

import torch.nn as nn

logger = logging.getLogger(__name__)

ProjectorFactory = Callable[[object], nn.Module]
ENTRY_POINT_GROUP = "llava.projectors"

_REGISTRY: dict[str, ProjectorFactory] = {}
_MLP_PATTERN = re.compile(r"^mlp(\d+)x_gelu$")


def register_projector(name: str, factory: ProjectorFactory, *, overwrite: bool = False) -> None:
    """Make `--mm_projector_type name` build `factory(config)`."""
    if name in _REGISTRY and _REGISTRY[name] is not factory and not overwrite:
        raise ValueError(f"projector type {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


class IdentityProjector(nn.Module):
    """Passes vision features through unchanged; needs mm_hidden_size == hidden_size."""

    def forward(self, image_features, *args, **kwargs):
        return image_features


def build_mlp_projector(in_features: int, out_features: int, depth: int) -> nn.Sequential:
    """LLaVA's `mlp{depth}x_gelu`: Linear, then (GELU, Linear) * (depth - 1).

    Parameter names (`0.weight`, `2.weight`, ...) match upstream LLaVA's `mm_projector`.
    """
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_features, out_features)]
    return nn.Sequential(*layers)


def _builtin_factory(name: str) -> ProjectorFactory | None:
    if name == "identity":
        return lambda config: IdentityProjector()
    if name == "linear":
        return lambda config: nn.Linear(config.mm_hidden_size, config.hidden_size)
    match = _MLP_PATTERN.match(name)
    if match:
        depth = int(match.group(1))
        return lambda config: build_mlp_projector(config.mm_hidden_size, config.hidden_size, depth)
    return None


def _load_entry_point(name: str) -> ProjectorFactory | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            # Import errors propagate: a broken plugin must fail loudly, not look "unknown".
            factory = ep.load()
            register_projector(name, factory, overwrite=True)
            return factory
    return None


def available_projectors() -> list[str]:
    """Registered names, installed entry points and the built-in patterns."""
    names = set(_REGISTRY) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names | {"identity", "linear", "mlp{N}x_gelu"})


def get_projector_factory(name: str) -> ProjectorFactory:
    factory = _REGISTRY.get(name) or _builtin_factory(name) or _load_entry_point(name)
    if factory is None:
        raise ValueError(
            f"unknown --mm_projector_type {name!r}; available: {', '.join(available_projectors())}. "
            f"A plugin registers new types with llava.model.multimodal_projector.builder.register_projector "
            f"or a '{ENTRY_POINT_GROUP}' entry point (is the plugin installed? `pip install -e .`)"
        )
    return factory


def build_vision_projector(config) -> nn.Module:
    """Build the projector named by `config.mm_projector_type` (default `linear`).

    See the module docstring for the call contract, including text guidance
    (`requires_text_guidance`), the CLS row (`wants_cls_token`) and `aux_loss`.
    """
    name = getattr(config, "mm_projector_type", None) or "linear"
    return get_projector_factory(name)(config)


def projector_requires_text_guidance(projector: nn.Module) -> bool:
    return bool(getattr(projector, "requires_text_guidance", False))


def projector_wants_cls_token(projector: nn.Module) -> bool:
    return bool(getattr(projector, "wants_cls_token", False))
