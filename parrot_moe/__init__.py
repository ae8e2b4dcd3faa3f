"""Parrot: text-guided multilingual Mixture-of-Experts projector, a plugin of the llava core.

Importing this package registers `--mm_projector_type parrot_moe` (its factory, its `--moe_*` flags,
and its per-language routing log); the `llava.projectors` entry point
`parrot_moe = parrot_moe:PARROT_MOE` makes the core find it without an import. It stacks on the
projector named by `--moe_base_projector`, whose own flags the core then accepts as well.
"""

from __future__ import annotations

from llava.model.multimodal_projector.builder import register_projector
from parrot_moe.arguments import ParrotMoeArguments
from parrot_moe.base_projector import build_base_projector
from parrot_moe.config import MOE_DEFAULTS, ParrotMoeSettings
from parrot_moe.export import export_parrot_moe
from parrot_moe.projector import ParrotMoeBlock, ParrotMoeProjector
from parrot_moe.routing_log import RoutingLogCallback


def build_parrot_moe_projector(config: object) -> ParrotMoeProjector:
    """Projector factory: reads mm_hidden_size, hidden_size, mm_vision_select_feature, moe_* and the base
    projector's fields from config, and records the routing query it resolved as `config.moe_router_query`."""
    settings = ParrotMoeSettings.from_config(config)
    projector = ParrotMoeProjector(settings, build_base_projector(config, settings.base_projector))
    saved = getattr(config, "moe_router_query", None)
    if saved is not None and saved != projector.router_query:
        raise ValueError(
            f"config.moe_router_query is {saved!r}, but --moe_base_projector {settings.base_projector} routes on "
            f"{projector.router_query!r}; the config.json was not written for this model"
        )
    config.moe_router_query = projector.router_query
    return projector


PARROT_MOE = register_projector(
    "parrot_moe",
    build_parrot_moe_projector,
    arguments=ParrotMoeArguments,
    callbacks=lambda: [RoutingLogCallback()],
    stacks_on="moe_base_projector",
    export=export_parrot_moe,
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
