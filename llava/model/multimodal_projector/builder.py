"""Projector registry: `config.mm_projector_type` -> a `ProjectorSpec` -> a `Projector` module.

Built-in types are `identity`, `linear` and `mlp{N}x_gelu` (`llava.model.multimodal_projector.builtin`).
Plugins add types without touching the core, in either of two ways:

    register_projector("my_projector", MyProjector, arguments=MyFlags, callbacks=make_callbacks)

or a `llava.projectors` entry point whose object is a `ProjectorSpec` (or a bare factory), loaded
lazily the first time the type is requested. What a projector must do is stated by the base
class `llava.model.multimodal_projector.base.Projector`; what the registry holds for it:

- `factory(config) -> Projector`: `config` carries `mm_hidden_size` (vision width D), `hidden_size`
  (LLM width C), `mm_vision_select_feature` and the projector's own fields (its flags).
- `arguments`: a dataclass of the projector's training flags. `llava/train/train.py` parses them with
  the core flags and saves every value in `config.json` under the flag's name.
- `callbacks() -> list[TrainerCallback]`: fresh trainer callbacks for one training run, e.g. a
  `llava.train.projector_metrics.ProjectorMetricsCallback` that logs the projector's per-image metrics.
- `stacks_on`: for a projector built on top of another one, the name of its flag that names the
  other projector's type (parrot_moe's `moe_base_projector`); that projector's flags are then
  parsed and saved as well, and only those.
- `export(projector, num_patches, export_of) -> llava.model.convert.remote.RemoteExport`: how
  `python -m llava.model.convert to-hf` writes this projector into a transformers remote-code folder
  (the files to copy, the module spec for config.json, key renames); `export_of(type, module,
  num_patches)` exports a base projector. None: to-hf refuses the type.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from llava.model.multimodal_projector.base import Projector
from llava.model.multimodal_projector.builtin import IdentityProjector, LinearProjector, MLPProjector

if TYPE_CHECKING:
    from transformers import TrainerCallback

logger = logging.getLogger(__name__)

ProjectorFactory = Callable[[object], Projector]
ENTRY_POINT_GROUP = "llava.projectors"
_MLP_PATTERN = re.compile(r"^mlp(\d+)x_gelu$")


@dataclass(frozen=True)
class ProjectorSpec:
    """Everything the core knows about one projector type."""

    name: str
    factory: ProjectorFactory
    arguments: type | None = None
    callbacks: Callable[[], Sequence[TrainerCallback]] | None = None
    stacks_on: str | None = None
    export: Callable[..., object] | None = None

    def make_callbacks(self) -> list[TrainerCallback]:
        return list(self.callbacks()) if self.callbacks is not None else []


_REGISTRY: dict[str, ProjectorSpec] = {}


def register_projector(
    name: str,
    factory: ProjectorFactory,
    *,
    arguments: type | None = None,
    callbacks: Callable[[], Sequence[TrainerCallback]] | None = None,
    stacks_on: str | None = None,
    export: Callable[..., object] | None = None,
    overwrite: bool = False,
) -> ProjectorSpec:
    """Make `--mm_projector_type name` build `factory(config)`; returns the registered spec."""
    if stacks_on is not None and (arguments is None or stacks_on not in {f.name for f in fields(arguments)}):
        raise ValueError(f"projector {name!r}: stacks_on={stacks_on!r} must name a field of its arguments dataclass")
    spec = ProjectorSpec(name, factory, arguments, callbacks, stacks_on, export)
    known = _REGISTRY.get(name)
    if known is not None and known != spec and not overwrite:
        raise ValueError(f"projector type {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = spec
    return spec


def _builtin_spec(name: str) -> ProjectorSpec | None:
    if name == "identity":
        return ProjectorSpec(name, IdentityProjector)
    if name == "linear":
        return ProjectorSpec(name, LinearProjector)
    match = _MLP_PATTERN.match(name)
    if match:
        depth = int(match.group(1))
        return ProjectorSpec(name, lambda config: MLPProjector(config, depth))
    return None


def _load_entry_point(name: str) -> ProjectorSpec | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name != name:
            continue
        # Import errors propagate: a broken plugin must fail loudly, not look "unknown".
        loaded = ep.load()
        if isinstance(loaded, ProjectorSpec):
            _REGISTRY[name] = loaded
        elif name not in _REGISTRY:  # a bare factory whose module did not register itself on import
            _REGISTRY[name] = ProjectorSpec(name, loaded, getattr(loaded, "arguments", None))
        return _REGISTRY[name]
    return None


def available_projectors() -> list[str]:
    """Registered names, installed entry points and the built-in patterns."""
    names = set(_REGISTRY) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names | {"identity", "linear", "mlp{N}x_gelu"})


def get_projector_spec(name: str) -> ProjectorSpec:
    spec = _REGISTRY.get(name) or _builtin_spec(name) or _load_entry_point(name)
    if spec is None:
        raise ValueError(
            f"unknown --mm_projector_type {name!r}; available: {', '.join(available_projectors())}. "
            f"A plugin registers new types with llava.model.multimodal_projector.builder.register_projector "
            f"or a '{ENTRY_POINT_GROUP}' entry point (is the plugin installed? `pip install -e .`)"
        )
    return spec


def projector_argument_types(name: str, flag_value: Callable[[str, object], object]) -> list[type]:
    """The flags dataclasses of projector type `name` and of every projector it stacks on, outermost
    first. `flag_value(flag_name, default)` reads a flag's value from the command line."""
    types: list[type] = []
    while True:
        spec = get_projector_spec(name)
        if spec.arguments is None:
            return types
        if spec.arguments in types:
            raise ValueError(f"projector {name!r} stacks on itself (through --{spec.stacks_on})")
        types.append(spec.arguments)
        if spec.stacks_on is None:
            return types
        default = next(f.default for f in fields(spec.arguments) if f.name == spec.stacks_on)
        name = flag_value(spec.stacks_on, default)


def build_vision_projector(config: object) -> Projector:
    """Build the projector named by `config.mm_projector_type` (see `Projector` for its contract)."""
    name = config.mm_projector_type
    projector = get_projector_spec(name).factory(config)
    if not isinstance(projector, Projector):
        raise TypeError(
            f"the factory of --mm_projector_type {name!r} returned a {type(projector).__name__}; projectors must "
            "subclass llava.model.multimodal_projector.Projector (forward returns a ProjectorOutput)"
        )
    return projector
