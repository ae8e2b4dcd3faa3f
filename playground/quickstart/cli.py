"""Quickstart: train and evaluate a multilingual Parrot model end to end on a CPU, offline.

    python -m playground.quickstart                 # the README's main job (`bash scripts/quickstart.sh`)
    python -m playground.quickstart --ablation      # plus the paper's Fig 5a ablation on the toy
    python -m playground.quickstart --fast          # a miniature of the whole pipeline, in outputs/quickstart-fast/

Steps: (1) tiny offline assets and the six-language easy-VQA data, (2) a short pretraining of the
tiny vision tower (standing in for CLIP's, see `playground.quickstart.vision`), (3) stage 1:
alignment on captions (projector, and the random-init tiny LLM), (4) stage 2: instruction tuning
with `--mm_projector_type parrot_moe`, (5) evaluation in every language, (6) reports. Everything lands in `--out` (default `outputs/quickstart/`, and `outputs/quickstart-fast/` with `--fast`, so a
miniature run never replaces the full run's results):

    results.md, results.csv         accuracy per language and category, free-form answer language
    radar.png                       accuracy across the six languages (paper Fig 9 style)
    expert_distribution.png/.csv    expert share per prompt language (paper Fig 5c style)
    checkpoint/                     the trained model (`python -m llava.serve.cli --model-path ...`)
    eval/                           predictions and per-file scores (VLMEvalKit layout)
    ablation/                       with --ablation: ablation.md/.csv/.png and the two extra models
    work/                           assets, data, pretrained tower, stage 1 and its split, ordered files

Every size and schedule setting is a flag (see --help); the defaults are the preset `DEFAULT` in
`playground.quickstart.settings`, `--fast` starts from `FAST` instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from playground.quickstart.curves import CurveLog
from playground.quickstart.evaluate import Evaluation, evaluate_checkpoint
from playground.quickstart.report import (
    write_ablation,
    write_expert_distribution,
    write_radar,
    write_results,
)
from playground.quickstart.settings import (
    DEFAULT,
    FAST,
    QuickstartSettings,
    add_settings_arguments,
    llm_folder,
    settings_from_args,
)
from playground.quickstart.stages import (
    ABLATION_VARIANTS,
    QUICKSTART_VARIANT,
    Stage1Output,
    Stage2Variant,
    build_data,
    build_tower,
    run_stage1,
    run_stage2,
)

logger = logging.getLogger("playground.quickstart")

FULL_OUT = Path("outputs/quickstart")
FAST_OUT = Path("outputs/quickstart-fast")  # its own folder: a miniature run must not replace the full one's


def output_folder(out: Path | None, fast: bool) -> Path:
    """`--out` when given, else the preset's own folder."""
    if out is not None:
        return out
    return FAST_OUT if fast else FULL_OUT


class StepTimer:
    """Wall time of each named step, for the report header."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.steps: list[tuple[str, float]] = []

    def run(self, name: str, function, *args, **kwargs):
        logger.info("== %s", name)
        begin = time.perf_counter()
        result = function(*args, **kwargs)
        self.steps.append((name, time.perf_counter() - begin))
        logger.info("== %s done in %.1f s", name, self.steps[-1][1])
        return result

    def lines(self) -> list[str]:
        total = time.perf_counter() - self.started
        return [f"- {name}: {seconds:.0f} s" for name, seconds in self.steps] + [f"- total: {total:.0f} s"]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def train_and_evaluate(
    settings: QuickstartSettings,
    variant: Stage2Variant,
    paths: dict[str, Path],
    start: Stage1Output,
    checkpoint: Path,
    eval_dir: Path,
    timer: StepTimer,
    curves: CurveLog,
) -> Evaluation:
    """Stage 2 of `variant` into `checkpoint` (replacing an earlier one), then its evaluation."""
    shutil.rmtree(checkpoint, ignore_errors=True)
    timer.run(
        f"stage 2: {variant.name}", run_stage2, settings, paths["data"], paths["work"], start, variant, checkpoint,
        curves,
    )
    evaluation = timer.run(
        f"evaluation: {variant.name}", evaluate_checkpoint, checkpoint, paths["data"], eval_dir,
        batch_size=settings.eval_batch_size, max_new_tokens=settings.max_new_tokens,
        freeform_probes=settings.freeform_probes,
    )
    evaluation.name = variant.name
    return evaluation


def stage0_curves(settings: QuickstartSettings) -> CurveLog:
    """The learning curves the stage-0 LLM was pretrained with (empty when its folder has none)."""
    path = llm_folder(settings) / "curves.csv"
    return CurveLog.read_csv(path) if path.is_file() else CurveLog()


def run(settings: QuickstartSettings, out_dir: Path, ablation: bool = False) -> dict[str, Evaluation]:
    """The whole pipeline; returns the evaluation of every trained model, the quickstart's last."""
    timer = StepTimer()
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    (out_dir / "settings.json").write_text(json.dumps(asdict(settings), indent=1), encoding="utf-8")
    curves = stage0_curves(settings)
    paths = {"work": work, "data": work / "data"}
    timer.run("easy-VQA data", build_data, settings, paths["data"])
    tower = timer.run("vision tower pretraining", build_tower, settings, work)
    start = timer.run("stage 1: alignment", run_stage1, settings, tower, paths["data"], work, curves)

    evaluations: dict[str, Evaluation] = {}
    variants = ABLATION_VARIANTS if ablation else (QUICKSTART_VARIANT,)
    for variant in variants:
        if variant is QUICKSTART_VARIANT:
            checkpoint, eval_dir = out_dir / "checkpoint", out_dir / "eval"
        else:
            checkpoint = out_dir / "ablation" / _slug(variant.name) / "checkpoint"
            eval_dir = out_dir / "ablation" / _slug(variant.name) / "eval"
        evaluations[variant.name] = train_and_evaluate(
            settings, variant, paths, start, checkpoint, eval_dir, timer, curves
        )
        if ablation:
            (out_dir / "ablation").mkdir(parents=True, exist_ok=True)
            print(write_ablation(evaluations, out_dir / "ablation", timer_header(settings, timer)) + "\n")

    quickstart = evaluations[QUICKSTART_VARIANT.name]
    header = timer_header(settings, timer)
    table = write_results(quickstart, out_dir, header)
    write_radar({quickstart.name: quickstart}, out_dir / "radar.png")
    write_expert_distribution(quickstart, out_dir)
    curves.write_csv(out_dir / "curves.csv")
    curves.plot(out_dir / "curves.png", title="Learning curves: held-out probes per skill and language")
    print(f"\n{table}\n")
    print("\n".join(timer.lines()))
    print(f"\nresults: {out_dir / 'results.md'} and {out_dir / 'results.csv'}")
    print(f"charts:  {out_dir / 'radar.png'}, {out_dir / 'expert_distribution.png'}, {out_dir / 'curves.png'}")
    if ablation:
        print(f"ablation: {out_dir / 'ablation' / 'ablation.md'} and {out_dir / 'ablation' / 'ablation.png'}")
    print(f"model:   {out_dir / 'checkpoint'}  (python -m llava.serve.cli --model-path {out_dir / 'checkpoint'} "
          f"--image-file IMAGE --query \"What colour is the shape?\")")
    return evaluations


def timer_header(settings: QuickstartSettings, timer: StepTimer) -> list[str]:
    return [f"Settings: {json.dumps(asdict(settings))}", "", "Wall time per step:", *timer.lines()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m playground.quickstart",
        description=__doc__.split("\n\n")[0],
        epilog="See the package docstring (`python -c 'import playground.quickstart as q; help(q)'`) for the outputs.",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output folder (default: {FULL_OUT}, with --fast {FAST_OUT})"
    )
    parser.add_argument("--fast", action="store_true", help="start from the miniature preset (tests, smoke runs)")
    parser.add_argument("--ablation", action="store_true", help="also train and compare the two mlp2x_gelu variants")
    add_settings_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args, FAST if args.fast else DEFAULT)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run(settings, output_folder(args.out, args.fast), ablation=args.ablation)
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

