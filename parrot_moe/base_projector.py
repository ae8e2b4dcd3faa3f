"""The base projector under the experts: H_v = base(Z_v), any registered projector type.

The base is built by its own factory from the model config, seen with two fields changed: its type
(`moe_base_projector`) and `mm_vision_select_feature cls_patch`. parrot_moe always asks the core for
the CLS row (`wants_cls_token`), so the base always gets it, and a base that can carry the CLS
(LLaVA's `mlp2x_gelu`, which projects every row) returns it projected as row 0: Eq 2's query. A base
that reads patches only (pargo drops the CLS) has no CLS row; its `summary_tokens` (pargo's global
queries) summarise the image instead, and their mean is the query. That choice is `router_query`:

- `cls`: query = projected CLS (paper Eq 2); visual tokens = the base's rows after the CLS (all rows
  under parrot_moe's own `cls_patch`, as in the authors' code);
- `summary_mean`: query = mean of the base's summary rows; visual tokens = every row of the base.
"""

from __future__ import annotations

from llava.model.multimodal_projector import Projector, build_vision_projector

ROUTER_QUERIES = ("cls", "summary_mean")


class BaseProjectorConfig:
    """The model config as the base's factory reads it: `overrides` first, then the config's fields."""

    def __init__(self, config: object, **overrides: object) -> None:
        self.__dict__.update(overrides)
        self._config = config

    def __getattr__(self, name: str) -> object:
        return getattr(self.__dict__["_config"], name)


def build_base_projector(config: object, base_type: str) -> Projector:
    """The base projector of `--moe_base_projector base_type`, fed the CLS row (see module docstring).

    Its submodules become parrot_moe's own under their own names (so a stage-1 file of the base loads
    unchanged), which needs every parameter and buffer of the base to live in a submodule.
    """
    if base_type == "parrot_moe":
        raise ValueError("--moe_base_projector parrot_moe: the experts need a base projector of another type")
    view = BaseProjectorConfig(config, mm_projector_type=base_type, mm_vision_select_feature="cls_patch")
    try:
        base = build_vision_projector(view)
    except ValueError as err:
        raise ValueError(f"--moe_base_projector {base_type}: {err}") from err
    if base.requires_text_guidance:
        raise ValueError(f"--moe_base_projector {base_type} is itself text-guided; use a projector of image features")
    if "moe" in dict(base.named_children()):
        raise ValueError(f"--moe_base_projector {base_type} has a submodule named 'moe', which is the experts' name")
    direct = [name for name, _ in base.named_parameters(recurse=False)] + [n for n, _ in base.named_buffers(recurse=False)]
    if direct:
        hint = " (mlp1x_gelu is the same single Linear with its weight in a submodule)" if base_type == "linear" else ""
        raise ValueError(
            f"--moe_base_projector {base_type}: parrot_moe adopts the base projector's submodules, but "
            f"{type(base).__name__} keeps {direct} on itself; use a base that keeps them in submodules{hint}"
        )
    return base


def router_query_of(base: Projector) -> str:
    """`cls` when the base (built with `cls_patch`) returns the projected CLS as row 0, else `summary_mean`."""
    return "cls" if base.emits_cls else "summary_mean"
