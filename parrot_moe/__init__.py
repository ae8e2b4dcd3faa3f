"""Parrot: text-guided multilingual Mixture-of-Experts projector, a plugin of the llava core.

Importing this package registers `--mm_projector_type parrot_moe` (its factory, its `--moe_*` flags
and its per-language routing log); the `llava.projectors` entry point
`parrot_moe = parrot_moe:PARROT_MOE` makes the core find it without an import.
"""

from __future__ import annotations

from llava.model.multimodal_projector.builder import register_projector
from parrot_moe.arguments import ParrotMoeArguments
from parrot_moe.config import MOE_DEFAULTS, ParrotMoeSettings
from parrot_moe.projector import ParrotMoeBlock, ParrotMoeProjector
from parrot_moe.routing_log import RoutingLogCallback


def build_parrot_moe_projector(config: object) -> ParrotMoeProjector:
    """Projector factory: reads mm_hidden_size, hidden_size, mm_vision_select_feature and moe_* from config."""
    return ParrotMoeProjector(ParrotMoeSettings.from_config(config))


PARROT_MOE = register_projector(
    "parrot_moe", build_parrot_moe_projector, arguments=ParrotMoeArguments, callbacks=lambda: [RoutingLogCallback()]
)

__all__ = [
    "MOE_DEFAULTS",
    "PARROT_MOE",
    "ParrotMoeArguments",
    "ParrotMoeBlock",
    "ParrotMoeProjector",
    "ParrotMoeSettings",
    "RoutingLogCallback",
    "build_parrot_moe_projector",
]
