"""The flags of the base projector, accepted beside parrot_moe's own.

`--mm_projector_type parrot_moe --moe_base_projector pargo --pargo_num_partial_queries 8` must parse,
but the core parses only the one flags dataclass of `--mm_projector_type`. So the dataclass that
parrot_moe registers is `ParrotMoeArguments` plus the flags of every other projector type known
when parrot_moe is imported (registered ones and installed `llava.projectors` entry points).

A base projector's flag defaults to None here ("not given"). After parsing, `__post_init__` fills in
the owner's default when the owner is the chosen base (so `config.json` records what was built),
and refuses a flag given for a projector that is not the base: a flag that would be ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import typing

from llava.model.multimodal_projector.builder import available_projectors, get_projector_spec

logger = logging.getLogger(__name__)

# Built-in types take no flags of their own; `mlp{N}x_gelu` is a name pattern, not a type.
_FLAGLESS_BUILTINS = {"identity", "linear", "mlp{N}x_gelu"}


def _default(flag: dataclasses.Field) -> object:
    if flag.default is not dataclasses.MISSING:
        return flag.default
    if flag.default_factory is not dataclasses.MISSING:
        return flag.default_factory()
    return None


def _other_projector_flags(own: set[str], own_type: str) -> dict[str, tuple[str, dataclasses.Field, type]]:
    """flag name -> (owning projector type, its field, its resolved type), skipping name clashes."""
    flags: dict[str, tuple[str, dataclasses.Field, type]] = {}
    for name in available_projectors():
        if name == own_type or name in _FLAGLESS_BUILTINS:
            continue
        arguments = get_projector_spec(name).arguments
        if arguments is None:
            continue
        hints = typing.get_type_hints(arguments)
        for flag in dataclasses.fields(arguments):
            if flag.name in own or flag.name in flags:
                logger.warning("--%s of projector %r clashes with another flag; parrot_moe does not accept it",
                               flag.name, name)
                continue
            flags[flag.name] = (name, flag, hints[flag.name])
    return flags


def with_base_projector_flags(arguments: type, own_type: str) -> type:
    """A dataclass: `arguments` (which has `moe_base_projector`) plus the other projectors' flags."""
    others = _other_projector_flags({f.name for f in dataclasses.fields(arguments)}, own_type)
    owners = {flag: (owner, _default(field)) for flag, (owner, field, _) in others.items()}

    def __post_init__(self) -> None:
        base = self.moe_base_projector
        for flag, (owner, default) in owners.items():
            value = getattr(self, flag)
            if owner == base and value is None:
                setattr(self, flag, default)
            elif owner != base and value is not None:
                raise ValueError(
                    f"--{flag} is a flag of the {owner} projector, but --moe_base_projector is {base}; "
                    f"add --moe_base_projector {owner} or drop --{flag}"
                )

    fields = [
        (
            flag,
            kind | None,
            dataclasses.field(
                default=None,
                metadata={"help": f"{field.metadata.get('help', '')} With --moe_base_projector {owner} "
                          f"(default {owners[flag][1]!r})."},
            ),
        )
        for flag, (owner, field, kind) in others.items()
    ]
    return dataclasses.make_dataclass(
        f"{arguments.__name__}WithBaseFlags",
        fields,
        bases=(arguments,),
        namespace={"__post_init__": __post_init__, "__module__": __name__},
    )
