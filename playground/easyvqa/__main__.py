"""`python -m playground.easyvqa build --out DIR [...]`: build the six-language easy-VQA data."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from playground.easyvqa.build import BuildConfig, build
from playground.easyvqa.training import parse_kind_shares, parse_mix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.easyvqa", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("build", help="build training JSON, images and benchmark TSVs")
    defaults = BuildConfig(out=Path("."))
    sub.add_argument("--out", type=Path, required=True, help="output folder (new, empty, or an earlier build)")
    sub.add_argument("--seed", type=int, default=defaults.seed)
    sub.add_argument("--mix", default=None, help="language weights, e.g. en=0.8,zh=0.04,pt=0.04,ar=0.04,tr=0.04,ru=0.04")
    sub.add_argument("--num-stage1", type=int, default=defaults.num_stage1, help="stage-1 captions")
    sub.add_argument("--num-stage2", type=int, default=defaults.num_stage2, help="stage-2 instruction items")
    sub.add_argument("--num-test-images", type=int, default=defaults.num_test_images, help="easy-VQA test images used")
    sub.add_argument("--mcq-fraction", type=float, default=defaults.mcq_fraction, help="share of stage-2 items asked as MCQ")
    sub.add_argument(
        "--kind-shares", default=None, help="stage-2 question kinds, e.g. color=1,shape=1,yes_no=1 (the default)"
    )
    sub.add_argument(
        "--probe-per-skill", type=int, default=defaults.probe_per_skill,
        help="held-out probe items per skill and language (probe.json; 0 writes none)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        mix = parse_mix(args.mix) if args.mix is not None else defaults.mix
        kind_shares = parse_kind_shares(args.kind_shares) if args.kind_shares is not None else defaults.kind_shares
        config = BuildConfig(
            out=args.out,
            seed=args.seed,
            mix=mix,
            num_stage1=args.num_stage1,
            num_stage2=args.num_stage2,
            num_test_images=args.num_test_images,
            mcq_fraction=args.mcq_fraction,
            kind_shares=kind_shares,
            probe_per_skill=args.probe_per_skill,
        )
        manifest = build(config)
    except (ValueError, FileExistsError) as err:
        parser.error(str(err))
    print(json.dumps(manifest["files"], ensure_ascii=False, indent=1))
    print(f"easy-VQA data written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
