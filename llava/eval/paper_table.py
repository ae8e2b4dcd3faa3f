"""One table of the paper's whole evaluation, from the summaries a run left in its output folder.

    python -m llava.eval.paper_table OUT

Reads `OUT/summary_*.json` (MMMB, MMBench, MMStar, ...) and `OUT/summary_mme.json`, and writes
`OUT/paper_summary.md`, `OUT/paper_summary.csv` and `OUT/radar_general.png`:

- multilingual rows: MMMB and MMBench, one column per language (en zh pt ar tr ru) and their mean;
- general rows (the paper's radar chart): MMBench-CN (MMBench's `zh` entry), MME (perception +
  cognition, 0-2800), MMStar, ScienceQA-IMG, SEED-Bench-IMG, RealWorldQA (accuracy, percent);
- every row names its rule and its prompt style.

The radar has one axis per general benchmark, accuracy in percent; MME is drawn as its total over
2800, in percent (the axis label says so). A benchmark that is not in `OUT` leaves a gap and a
`-` in the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llava.eval.languages import LANGUAGES
from llava.eval.mme_reports import mme_from_dict
from llava.eval.reports import atomic_write_rows, atomic_write_text
from llava.eval.summary import accuracy_from_dict

MME_MAX = 2800.0
# label -> the slug of its summary_<slug>.json
GENERAL_ROWS = (
    ("MMBench-CN", "mmbench"),
    ("MME", "mme"),
    ("MMStar", "mmstar"),
    ("ScienceQA-IMG", "scienceqa_test"),
    ("SEED-Bench-IMG", "seedbench_img"),
    ("RealWorldQA", "realworldqa"),
)


class PaperTableError(ValueError):
    """A folder without summaries, or with summaries of several models."""


def _load(directory: Path) -> tuple[str, dict[str, dict]]:
    records, models = {}, set()
    for path in sorted(directory.glob("summary_*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        records[path.stem.removeprefix("summary_")] = data
        models.add(data.get("model"))
    if not records:
        raise PaperTableError(
            f"{directory} holds no summary_*.json: run python -m llava.eval.run_benchmark --output-dir {directory} first"
        )
    if len(models) > 1:
        raise PaperTableError(f"{directory} holds summaries of several models ({', '.join(map(str, models))})")
    return models.pop(), records


def paper_rows(directory: Path) -> tuple[str, list[dict[str, str]]]:
    """(model name, rows): each row has `benchmark`, `rule`, `prompt_style`, `metric`, the language
    columns (multilingual) or `score` (general)."""
    model, records = _load(directory)
    rows = []
    for label, slug in (("MMMB", "mmmb"), ("MMBench", "mmbench")):
        entries = [accuracy_from_dict(e) for e in records.get(slug, {}).get("results", [])]
        if label == "MMBench":
            entries = [e for e in entries if e.name.lower().startswith("mmbench_dev")]
        if not entries:
            continue
        by_language = {e.language: 100 * e.overall.accuracy for e in entries}
        row = {"benchmark": label, "rule": entries[0].rule, "prompt_style": _styles(entries), "metric": "accuracy"}
        row.update({code: f"{by_language[code]:.2f}" for code in LANGUAGES if code in by_language})
        row["mean"] = f"{sum(by_language.values()) / len(by_language):.2f}"
        rows.append(row)
    for label, slug in GENERAL_ROWS:
        row = _general_row(label, slug, records)
        if row:
            rows.append(row)
    return model, rows


def _styles(entries) -> str:
    return ", ".join(sorted({e.prompt_style for e in entries}))


def _general_row(label: str, slug: str, records: dict[str, dict]) -> dict[str, str] | None:
    results = records.get(slug, {}).get("results", [])
    if slug == "mme":
        if not results:
            return None
        mme = mme_from_dict(results[0])
        return {
            "benchmark": label,
            "rule": "mme",
            "prompt_style": mme.prompt_style,
            "metric": "perception + cognition",
            "score": f"{mme.total:.2f}",
            "percent": f"{100 * mme.total / MME_MAX:.2f}",
        }
    entries = [accuracy_from_dict(e) for e in results]
    if slug == "mmbench":
        entries = [e for e in entries if e.language == "zh"]
    if not entries:
        return None
    value = f"{100 * entries[0].overall.accuracy:.2f}"
    return {
        "benchmark": label,
        "rule": entries[0].rule,
        "prompt_style": entries[0].prompt_style,
        "metric": "accuracy",
        "score": value,
        "percent": value,
    }


def paper_markdown(model: str, rows: list[dict[str, str]]) -> str:
    lines = [f"# The paper's evaluation: {model}", "", "## Multilingual (accuracy, %)", ""]
    lines.append("| benchmark | " + " | ".join(LANGUAGES) + " | mean | rule | prompt style |")
    lines.append("|---" * (len(LANGUAGES) + 4) + "|")
    for row in rows:
        if "mean" in row:
            cells = [row.get(code, "-") for code in LANGUAGES]
            lines.append(f"| {row['benchmark']} | " + " | ".join(cells) + f" | {row['mean']} | {row['rule']} | {row['prompt_style']} |")
    lines += ["", "## General (the radar chart)", "", "| benchmark | score | metric | rule | prompt style |"]
    lines.append("|---|---|---|---|---|")
    general = {row["benchmark"]: row for row in rows if "score" in row}
    for label, _ in GENERAL_ROWS:
        row = general.get(label)
        if row:
            lines.append(f"| {label} | {row['score']} | {row['metric']} | {row['rule']} | {row['prompt_style']} |")
        else:
            lines.append(f"| {label} | - | not evaluated | | |")
    return "\n".join(lines) + "\n"


def plot_general_radar(model: str, rows: list[dict[str, str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    general = {row["benchmark"]: float(row["percent"]) for row in rows if "percent" in row}
    labels = [label for label, _ in GENERAL_ROWS]
    values = [general.get(label, float("nan")) for label in labels]
    angles = np.linspace(0, 2 * np.pi, len(labels), endpoint=False).tolist()
    figure, axis = plt.subplots(subplot_kw={"projection": "polar"}, figsize=(6, 6))
    axis.set_theta_offset(np.pi / 2)
    axis.set_theta_direction(-1)
    axis.plot(angles + angles[:1], values + values[:1], marker="o", linewidth=1.5, label=model)
    axis.fill(angles + angles[:1], values + values[:1], alpha=0.1)
    axis.set_xticks(angles)
    axis.set_xticklabels([f"{label}\n(% of 2800)" if label == "MME" else label for label in labels])
    axis.set_ylim(0, 100)
    axis.set_title("General benchmarks", pad=18)
    axis.legend(loc="lower right", bbox_to_anchor=(1.25, -0.12), fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_paper_table(directory: Path) -> str:
    """Write `paper_summary.md/.csv` and `radar_general.png` in `directory`; return the markdown."""
    model, rows = paper_rows(directory)
    text = paper_markdown(model, rows)
    atomic_write_text(directory / "paper_summary.md", text)
    columns = ["benchmark", *LANGUAGES, "mean", "score", "metric", "rule", "prompt_style"]
    atomic_write_rows(directory / "paper_summary.csv", columns, [[r.get(c, "") for c in columns] for r in rows], delimiter=",")
    plot_general_radar(model, rows, directory / "radar_general.png")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llava.eval.paper_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, help="the --output-dir of python -m llava.eval.run_benchmark")
    args = parser.parse_args(argv)
    try:
        print(write_paper_table(args.output_dir))
    except (PaperTableError, OSError, json.JSONDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
