"""Projectors: the contract (`Projector`, `ProjectorOutput`), the built-in types and the registry."""

from llava.model.multimodal_projector.base import ROUTING_METRIC, Projector, ProjectorOutput
from llava.model.multimodal_projector.builder import (
    ProjectorSpec,
    available_projectors,
    build_vision_projector,
    get_projector_spec,
    register_projector,
)
from llava.model.multimodal_projector.builtin import IdentityProjector, LinearProjector, MLPProjector

__all__ = [
    "ROUTING_METRIC",
    "IdentityProjector",
    "LinearProjector",
    "MLPProjector",
    "Projector",
    "ProjectorOutput",
    "ProjectorSpec",
    "available_projectors",
    "build_vision_projector",
    "get_projector_spec",
    "register_projector",
]
