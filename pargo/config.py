"""ParGo settings: the `pargo_*` fields of a model config, their defaults and their validation.

Flag names and defaults are declared once, in `pargo.arguments.PargoArguments`; the training CLI
writes every value into `config.json` under its name, so `PargoSettings.from_config(config)` rebuilds
the same projector from a saved checkpoint. What depends on the vision tower (the patch grid, and so
whether P windows tile it) is checked by `pargo.masks.window_layout` once the patch count is known.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from pargo.arguments import PargoArguments

PARGO_DEFAULTS: dict[str, object] = {f.name: f.default for f in dataclasses.fields(PargoArguments)}
_WINDOW = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def _field(config: object, name: str) -> object:
    value = getattr(config, name, None)
    return PARGO_DEFAULTS[name] if value is None else value


def _count(config: object, name: str, minimum: int) -> int:
    value = _field(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"--{name} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_window(text: str | None) -> tuple[int, int] | None:
    """`--pargo_window` "HxW" -> (H, W) in patches; None stays None (derived from the grid)."""
    if text is None:
        return None
    match = _WINDOW.match(str(text))
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise ValueError(
            f"--pargo_window {text!r} is not HxW with positive sizes; e.g. 1x2 is one row of two patches"
        )
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class PargoSettings:
    """Resolved settings of one ParGo projector.

    `vision_hidden_size` is the vision width D, `hidden_size` the LLM width C, `width` the Q-Former's;
    `input_has_cls` whether row 0 of the projector's input is the vision CLS (it is dropped: ParGo
    reads patches only).
    """

    vision_hidden_size: int
    hidden_size: int
    layers: int
    width: int
    heads: int
    num_partial: int
    num_global: int
    window: tuple[int, int] | None
    input_has_cls: bool

    @property
    def num_queries(self) -> int:
        return self.num_partial + self.num_global

    @classmethod
    def from_config(cls, config: object) -> PargoSettings:
        """Read `mm_hidden_size`, `hidden_size`, `mm_vision_select_feature` and the `pargo_*` fields."""
        for required in ("mm_hidden_size", "hidden_size"):
            if getattr(config, required, None) is None:
                raise ValueError(
                    f"the pargo projector needs config.{required}; build it from a model config (config.json) "
                    f"that has {required} set"
                )
        width = _count(config, "pargo_hidden_size", 1)
        heads = _count(config, "pargo_heads", 1)
        if width % heads:
            raise ValueError(
                f"--pargo_hidden_size {width} is not divisible by --pargo_heads {heads}; pick heads that divide it"
            )
        num_partial = _count(config, "pargo_num_partial_queries", 0)
        num_global = _count(config, "pargo_num_global_queries", 0)
        if num_partial + num_global == 0:
            raise ValueError("--pargo_num_partial_queries and --pargo_num_global_queries are both 0: no tokens")
        window = parse_window(_field(config, "pargo_window"))
        if window is not None and num_partial == 0:
            raise ValueError("--pargo_window is set but --pargo_num_partial_queries is 0: no query uses a window")
        return cls(
            vision_hidden_size=int(config.mm_hidden_size),
            hidden_size=int(config.hidden_size),
            layers=_count(config, "pargo_layers", 1),
            width=width,
            heads=heads,
            num_partial=num_partial,
            num_global=num_global,
            window=window,
            input_has_cls=getattr(config, "mm_vision_select_feature", None) == "cls_patch",
        )
