"""`python -m llava.model.convert SUBCOMMAND ...`: the core converters plus those plugins install.

    python -m llava.model.convert to-hf CKPT OUT         ours -> transformers-native Llava
    python -m llava.model.convert from-hf SRC OUT        transformers-native Llava -> ours
    python -m llava.model.convert from-parrot SRC OUT    AIDC-AI Parrot -> ours (the parrot_moe plugin)

Bad input (unknown model_type, a missing tensor, a shape mismatch, a projector the target cannot
express) stops with one line naming the file and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from llava.model.convert.base import ENTRY_POINT_GROUP, ConversionError, Converter


def core_converters() -> list[Converter]:
    from llava.model.convert.from_hf import FROM_HF
    from llava.model.convert.to_hf import TO_HF

    return [TO_HF, FROM_HF]


def plugin_converters() -> list[Converter]:
    """Converters declared by installed plugins. A plugin that fails to import fails loudly."""
    found = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        converter = entry_point.load()
        if not isinstance(converter, Converter) or converter.name != entry_point.name:
            raise TypeError(
                f"entry point {entry_point.name} = {entry_point.value} in group {ENTRY_POINT_GROUP!r} must be a "
                f"llava.model.convert.base.Converter named {entry_point.name!r}"
            )
        found.append(converter)
    return found


def build_parser(converters: list[Converter]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.model.convert",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for converter in converters:
        sub = commands.add_parser(
            converter.name,
            help=converter.help,
            description=converter.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        converter.add_arguments(sub)
        sub.set_defaults(run=converter.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    converters = core_converters() + plugin_converters()
    args = build_parser(converters).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = args.run(args)
    except (ConversionError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
