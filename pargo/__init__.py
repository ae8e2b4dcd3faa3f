"""ParGo: partial and global learned queries as a projector plugin of the llava core.

Importing this package registers `--mm_projector_type pargo` (its factory and its `--pargo_*` flags);
the `llava.projectors` entry point `pargo = pargo:PARGO` makes the core find it without an import.
"""

from __future__ import annotations

from llava.model.multimodal_projector.builder import register_projector
from pargo.arguments import PargoArguments
from pargo.config import PARGO_DEFAULTS, PargoSettings
from pargo.export import export_pargo
from pargo.projector import PargoProjector


def build_pargo_projector(config: object) -> PargoProjector:
    """Projector factory: reads mm_hidden_size, hidden_size, mm_vision_select_feature and pargo_* from config."""
    return PargoProjector(PargoSettings.from_config(config))


PARGO = register_projector("pargo", build_pargo_projector, arguments=PargoArguments, export=export_pargo)

__all__ = ["PARGO", "PARGO_DEFAULTS", "PargoArguments", "PargoProjector", "PargoSettings", "build_pargo_projector"]
