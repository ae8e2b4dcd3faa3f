"""When does the MoE help? mlp2x_gelu against parrot_moe at three non-English shares of stage 2.

    python -m playground.quickstart.ablation                       # the whole grid, outputs/quickstart-ablation/
    python -m playground.quickstart.ablation --seeds 0 --num-stage2 8000 --stage2-epochs 1   # a smaller one

The grid: projector {mlp2x_gelu, parrot_moe} x stage-2 language share {none (English only), the
paper's Table 1 shares, the quickstart's 4 % per language} x `--seeds` (stage-2 seeds). The data,
the stage-0 LLM, the vision tower and stage 1 are built once and shared by every cell; each cell
is one stage 2 and one evaluation. Every quickstart flag applies (`--stage1-english-only true`
runs stage 1 on English captions, as the paper does; `--moe-guidance-norm` and
`--moe-router-temperature` set the router of the parrot_moe cells). The test split is the same
six-language MMMB for every cell. Writes `ablation_shares.md/.csv` (per cell: MMMB per language and
the free-form answers in the question's language, mean and seed range; the routing diagnostics of
every parrot_moe cell) and `ablation_shares.png` (per language, MMMB and the in-language share
against the stage-2 share, a line per projector, the seed range as error bars; `--replot` redraws it
from the CSV). Run it at one fixed thread count (`--threads`): a run is
deterministic there, so the seed range is the seed's effect alone.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import os
import sys
from pathlib import Path

import torch

from playground.quickstart.cli import StepTimer, timer_header, train_and_evaluate
from playground.quickstart.curves import CurveLog
from playground.quickstart.evaluate import Evaluation
from playground.quickstart.settings import DEFAULT, FAST, add_settings_arguments, settings_from_args
from playground.quickstart.stages import Stage2Variant, build_data, build_tower, run_stage1

logger = logging.getLogger("playground.quickstart.ablation")

# The paper's Table 1 (stage-2 data, thousands of samples): 665K English beside these.
TABLE1_THOUSANDS = {"en": 665, "zh": 71, "pt": 14, "ar": 12, "tr": 17, "ru": 14}
TABLE1_MIX = {lang: count / sum(TABLE1_THOUSANDS.values()) for lang, count in TABLE1_THOUSANDS.items()}
# name -> (label, stage-2 file); "table1" is built by this command, the other two by every build.
SHARES = {
    "none": ("none (English only)", "stage2_instruct_en_only.json"),
    "table1": ("paper Table 1 (zh 9 %, pt/ar/tr/ru 1.5-2.1 %)", "stage2_instruct_table1.json"),
    "default": ("quickstart (4 % each)", "stage2_instruct.json"),
}
SHORT_LABELS = {"none": "none", "table1": "Table 1", "default": "4 %"}  # chart ticks
PROJECTORS = ("mlp2x_gelu", "parrot_moe")
DEFAULT_OUT = Path("outputs/quickstart-ablation")


@dataclasses.dataclass
class Cell:
    projector: str
    share: str
    seed: int
    evaluation: Evaluation

    @property
    def name(self) -> str:
        return f"{self.projector} / {self.share} / seed {self.seed}"


def run_grid(settings, out_dir: Path, seeds: list[int], shares: list[str], projectors: list[str]) -> list[Cell]:
    """Shared data, tower and stage 1, then one stage 2 + evaluation per cell."""
    timer = StepTimer()
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    curves = CurveLog()
    paths = {"work": work, "data": work / "data"}
    timer.run("easy-VQA data", build_data, settings, paths["data"], {"table1": TABLE1_MIX})
    tower = timer.run("vision tower pretraining", build_tower, settings, work)
    start = timer.run("stage 1: alignment", run_stage1, settings, tower, paths["data"], work, curves)
    cells = []
    for seed in seeds:
        for share in shares:
            for projector in projectors:
                cell_settings = dataclasses.replace(settings, seed=seed)
                variant = Stage2Variant(f"{projector} ({share}, seed {seed})", projector, SHARES[share][1])
                folder = out_dir / "cells" / f"{projector}_{share}_seed{seed}"
                evaluation = train_and_evaluate(
                    cell_settings, variant, paths, start, folder / "checkpoint", folder / "eval", timer, curves
                )
                cells.append(Cell(projector, share, seed, evaluation))
                write_reports(cells, out_dir, timer_header(settings, timer))  # a partial grid is readable too
    curves.write_csv(out_dir / "curves.csv")
    return cells


def _spread(values: list[float]) -> str:
    mean = sum(values) / len(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ({min(values):.1f}-{max(values):.1f})"


def _grouped(cells: list[Cell]) -> dict[tuple[str, str], list[Cell]]:
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.projector, cell.share), []).append(cell)
    return groups


def write_reports(cells: list[Cell], out_dir: Path, header: list[str]) -> str:
    from llava.eval.languages import LANGUAGES
    from parrot_moe.diagnostics import diagnose, diagnostics_markdown

    langs = [lang for lang in LANGUAGES if lang in cells[0].evaluation.mmmb]
    lines = ["| projector | stage-2 share | seeds | " + " | ".join(langs) + " | in language (min over languages) |",
             "|---|---|---|" + "---|" * (len(langs) + 1)]
    for (projector, share), group in _grouped(cells).items():
        accuracy = [_spread([100 * c.evaluation.mmmb[lang].overall.accuracy for c in group]) for lang in langs]
        in_language = _spread([min(100 * c.evaluation.freeform[lang].in_language_share for lang in langs) for c in group])
        lines.append(f"| {projector} | {SHARES[share][0]} | {len(group)} | " + " | ".join(accuracy) + f" | {in_language} |")
    table = "\n".join(lines)
    routing = []
    for cell in cells:
        if cell.evaluation.routing:
            ordered = {lang: cell.evaluation.routing[lang] for lang in langs if lang in cell.evaluation.routing}
            routing += [f"### {cell.name}", "", *diagnostics_markdown(diagnose(ordered)), ""]
    markdown = "\n".join([
        "# Language-share ablation: MMMB overall (%) per language, mean (seed range)", "", *header, "", table, "",
        "## Routing diagnostics of every parrot_moe cell", "", *(routing or ["(no parrot_moe cell)"]),
    ])
    (out_dir / "ablation_shares.md").write_text(markdown + "\n", encoding="utf-8")
    with (out_dir / "ablation_shares.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["projector", "share", "seed", "language", "mmmb_overall", "in_language"])
        for cell in cells:
            for lang in langs:
                writer.writerow([cell.projector, cell.share, cell.seed, lang,
                                 f"{100 * cell.evaluation.mmmb[lang].overall.accuracy:.2f}",
                                 f"{100 * cell.evaluation.freeform[lang].in_language_share:.2f}"])
    plot_shares(read_records(out_dir / "ablation_shares.csv"), out_dir / "ablation_shares.png")
    return table


def read_records(path: Path) -> list[dict]:
    """The rows of an `ablation_shares.csv`, numbers as floats; names the file and the fix when unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; pass the --out folder of a finished ablation run")
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"projector", "share", "seed", "language", "mmmb_overall", "in_language"}
    if not rows or not needed <= set(rows[0]):
        raise ValueError(f"{path}: expected the columns {sorted(needed)} of an ablation run; rerun the ablation")
    return [{**row, "mmmb_overall": float(row["mmmb_overall"]), "in_language": float(row["in_language"])} for row in rows]


def plot_shares(records: list[dict], path: Path) -> None:
    """Per language (columns), MMMB (top row) and the share of free-form answers in the question's
    language (bottom row) against the stage-2 share: a line per projector, the seed range as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llava.eval.languages import LANGUAGES, language_label

    langs = [lang for lang in LANGUAGES if any(r["language"] == lang for r in records)]
    shares = [share for share in SHARES if any(r["share"] == share for r in records)]
    rows = (("mmmb_overall", "MMMB overall (%)"), ("in_language", "answers in the\nquestion's language (%)"))
    figure, axes = plt.subplots(len(rows), len(langs), figsize=(2.6 * len(langs), 6.4), sharey="row", squeeze=False)
    for row, (column, ylabel) in enumerate(rows):
        for col, lang in enumerate(langs):
            axis = axes[row][col]
            for projector in PROJECTORS:
                points = [[r[column] for r in records if r["projector"] == projector and r["share"] == share
                           and r["language"] == lang] for share in shares]
                xs = [i for i, values in enumerate(points) if values]
                if not xs:
                    continue
                means = [sum(points[i]) / len(points[i]) for i in xs]
                low = [means[k] - min(points[i]) for k, i in enumerate(xs)]
                high = [max(points[i]) - means[k] for k, i in enumerate(xs)]
                axis.errorbar(xs, means, yerr=[low, high], marker="o", capsize=3, label=projector)
            if row == 0:
                axis.set_title(language_label(lang))
            axis.set_xticks(range(len(shares)))
            axis.set_xticklabels([SHORT_LABELS[share] for share in shares])
            axis.set_ylim(0, 105)
            if row == len(rows) - 1:
                axis.set_xlabel("non-English share in stage 2")
        axes[row][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize="small", loc="lower right")
    figure.suptitle("MMMB and in-language answers per language against the non-English share of stage 2 "
                    "(bars: seed range)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _csv_list(text: str, choices: tuple[str, ...] | None = None, kind=str) -> list:
    values = [kind(part.strip()) for part in text.split(",") if part.strip()]
    if not values or (choices and any(v not in choices for v in values)):
        raise argparse.ArgumentTypeError(f"{text!r}: give a comma-separated list" + (f" of {', '.join(choices)}" if choices else ""))
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.quickstart.ablation", description=__doc__.split("\n\n")[0],
                                     epilog="The module docstring describes the grid and the outputs.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--seeds", type=lambda t: _csv_list(t, kind=int), default=[0, 1], help="stage-2 seeds (default 0,1)")
    parser.add_argument("--shares", type=lambda t: _csv_list(t, tuple(SHARES)), default=list(SHARES),
                        help="none,table1,default (default: all three)")
    parser.add_argument("--projectors", type=lambda t: _csv_list(t, PROJECTORS), default=list(PROJECTORS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads, fixed for the whole grid (default 2)")
    parser.add_argument("--fast", action="store_true", help="start from the miniature preset (tests, smoke runs)")
    parser.add_argument("--replot", action="store_true",
                        help="train nothing: redraw OUT/ablation_shares.png from OUT/ablation_shares.csv")
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    if args.replot:
        try:
            plot_shares(read_records(args.out / "ablation_shares.csv"), args.out / "ablation_shares.png")
        except (FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(args.out / "ablation_shares.png")
        return 0
    settings = settings_from_args(args, FAST if args.fast else DEFAULT)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    try:
        cells = run_grid(settings, args.out, args.seeds, args.shares, args.projectors)
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print((args.out / "ablation_shares.md").read_text(encoding="utf-8").split("## Routing")[0])
    print(f"{len(cells)} cells: {args.out / 'ablation_shares.md'}, {args.out / 'ablation_shares.csv'}, "
          f"{args.out / 'ablation_shares.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
