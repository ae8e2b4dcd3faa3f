"""CLI: `python -m llava.tiny build --out DIR [--seed 0] [--force] [--hidden-size 64 ...]`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time

from llava.tiny.build import build_tiny_assets
from llava.tiny.models import TinySizes
from llava.tiny.sources import MissingAssetPackageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llava.tiny", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write DIR/qwen2, DIR/llama, DIR/clip, DIR/chinese_clip and DIR/siglip offline")
    build.add_argument("--out", required=True, help="folder to write the five asset folders into")
    build.add_argument("--seed", type=int, default=0, help="seed of the random initialisation (default 0)")
    build.add_argument("--force", action="store_true", help="rebuild folders that are already complete")
    sizes = build.add_argument_group("model sizes (defaults give the tiny test models)")
    for size in dataclasses.fields(TinySizes):
        default = "" if size.default is None else f" (default: {size.default})"
        sizes.add_argument(
            f"--{size.name.replace('_', '-')}",
            dest=size.name,
            type=int,
            metavar="N",
            help=size.metadata["help"] + default,
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {size.name: getattr(args, size.name) for size in dataclasses.fields(TinySizes)}
    try:
        TinySizes.from_overrides(**overrides)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        folders = build_tiny_assets(args.out, seed=args.seed, force=args.force, **overrides)
    except (FileExistsError, MissingAssetPackageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, folder in folders.items():
        print(f"{name}: {folder}")
    print(f"tiny assets ready in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
