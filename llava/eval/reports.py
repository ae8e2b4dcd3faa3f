"""Output files: scored predictions TSV, `<name>_acc.csv`, a markdown summary and a radar chart.

- `<name>_result.tsv`: the predictions in VLMEvalKit layout (every input column but `image`) plus
  `image_index` (pair key), `extracted` (the letter, empty for no answer), `extract_method`, `hit`
  (0/1) and `issue` (why a row was scored wrong, if it was).
- `<name>_acc.csv`: VLMEvalKit's layout: one row per split; columns `split`, `Overall`, then each
  l2-category and category; values are fractions in [0, 1].

Summaries and charts, one set per benchmark, written by `llava.eval.summary` (`summary_mmmb.md`, ...):

- `summary_<benchmark>.md`: the benchmark as a row and languages as columns (percent), then per-category and
  per-l2-category tables, then row counts (rows, rows with problems, rows with no answer).
- `summary_<benchmark>.csv`: the same numbers in long form.
- `radar_<benchmark>.png`: one radar per benchmark with one axis per language (the paper's Figure 9).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from llava.eval.benchmark import PAIR_KEY_COLUMN, Benchmark
from llava.eval.languages import LANGUAGES, language_label, ordered_languages
from llava.eval.scoring import Accuracy, ScoredRow

RESULT_COLUMNS = ("prediction", "extracted", "extract_method", "hit", "issue")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and a rename: readers (and racing writers) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def tsv_safe(row: Sequence[object]) -> list[object]:
    """Cells with carriage returns turned into newlines: the csv writer quotes `\n` but not a lone `\r`."""
    return [cell.replace("\r\n", "\n").replace("\r", "\n") if isinstance(cell, str) else cell for cell in row]


def atomic_write_rows(
    path: Path, header: Sequence[str], rows: Iterable[Sequence[object]], *, delimiter: str = "\t"
) -> None:
    """Write a TSV (or CSV with `delimiter=","`) atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(tsv_safe(row) for row in rows)
    atomic_write_text(path, buffer.getvalue())


def output_columns(benchmark: Benchmark, extra: Sequence[str]) -> list[str]:
    """Input columns without `image`, plus `image_index` when known, plus `extra` (deduplicated)."""
    columns = [c for c in benchmark.columns if c != "image" and c not in extra and c != PAIR_KEY_COLUMN]
    if benchmark.has_images or PAIR_KEY_COLUMN in benchmark.columns:
        columns.append(PAIR_KEY_COLUMN)
    return columns + list(extra)


def write_scored_predictions(benchmark: Benchmark, rows: list[ScoredRow], path: Path) -> None:
    """Write `<name>_result.tsv` (see the module docstring)."""
    columns = output_columns(benchmark, RESULT_COLUMNS)
    body = []
    for row in rows:
        values = dict(row.item.fields)
        values[PAIR_KEY_COLUMN] = "" if row.item.image_key is None else str(row.item.image_key)
        values["prediction"] = row.item.prediction
        values["extracted"] = row.extraction.letter or ""
        values["extract_method"] = row.extraction.method
        values["hit"] = str(int(row.hit))
        values["issue"] = "; ".join(row.issues)
        body.append([values.get(column, "") for column in columns])
    atomic_write_rows(path, columns, body)


def write_acc_csv(result: Accuracy, path: Path) -> None:
    """Write `<name>_acc.csv` in VLMEvalKit's layout (split rows, `Overall` column, fractions)."""
    l2 = sorted(result.by_l2_category)
    categories = sorted(result.by_category)
    keys = [("overall", "Overall"), *(("l2-category", n) for n in l2), *(("category", n) for n in categories)]
    rows = []
    for split, tallies in sorted(result.per_split.items()):
        rows.append([split, *(f"{tallies[key].accuracy:.6f}" if key in tallies else "" for key in keys)])
    atomic_write_rows(path, ["split", "Overall", *l2, *categories], rows, delimiter=",")


def benchmark_family(name: str) -> str:
    """Row label of a dataset in the summary: `MMMB`, `MMBench`, or the name without its language."""
    lowered = name.lower()
    if "mmmb" in lowered:
        return "MMMB"
    if "mmbench" in lowered:
        return "MMBench"
    for code in ("en", "cn", "zh", "pt", "ar", "tr", "ru"):
        for separator in "_-.":
            suffix = f"{separator}{code}"
            if lowered.endswith(suffix):
                return name[: -len(suffix)]
    return name


def markdown_table(title: str, rows: dict[str, dict[str, str]], languages: list[str]) -> list[str]:
    """Lines of a markdown table: one row per label, one column per language ("-" where missing)."""
    lines = [f"| {title} | " + " | ".join(languages) + " |", "|---" * (len(languages) + 1) + "|"]
    for label, cells in rows.items():
        lines.append(f"| {label} | " + " | ".join(cells.get(code, "-") for code in languages) + " |")
    return lines


def summary_markdown(results: list[Accuracy], model_name: str | None = None) -> str:
    """Markdown tables with languages as columns (accuracy in percent)."""
    languages = ordered_languages(r.language for r in results)
    families: dict[str, list[Accuracy]] = {}
    for result in results:
        families.setdefault(benchmark_family(result.name), []).append(result)
    heading = f"# Evaluation summary{f': {model_name}' if model_name else ''}"
    overall = {
        f"{family} ({members[0].rule})": {r.language: f"{100 * r.overall.accuracy:.2f}" for r in members}
        for family, members in families.items()
    }
    lines = [heading, "", *markdown_table("Benchmark", overall, languages)]
    for family, members in families.items():
        for label, attribute in (("category", "by_category"), ("l2-category", "by_l2_category")):
            names = sorted({name for r in members for name in getattr(r, attribute)})
            if not names:
                continue
            rows = {
                name: {
                    r.language: f"{100 * getattr(r, attribute)[name].accuracy:.2f}"
                    for r in members
                    if name in getattr(r, attribute)
                }
                for name in names
            }
            lines += ["", f"## {family}: per {label}", "", *markdown_table(label, rows, languages)]
    lines += [
        "",
        "## Rows",
        "",
        "| file | language | rule | prompt style | rows | units | right | with problems | no answer |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        lines.append(
            f"| {r.name} | {r.language} | {r.rule} | {r.prompt_style} | {r.rows} | {r.overall.total} | {r.overall.hits} | "
            f"{r.rows_with_issues} | {r.no_answer} |"
        )
    return "\n".join(lines) + "\n"


def write_summary_csv(results: list[Accuracy], path: Path) -> None:
    """Long-form summary: benchmark, language, rule, level, name, accuracy (fraction), hits, total."""
    header = ["benchmark", "file", "language", "rule", "prompt_style", "level", "name", "accuracy", "hits", "total"]
    rows = []
    for r in results:
        family = benchmark_family(r.name)
        groups = [
            ("overall", {"Overall": r.overall}),
            ("category", r.by_category),
            ("l2-category", r.by_l2_category),
        ]
        for level, tallies in groups:
            for name, tally in sorted(tallies.items()):
                rows.append(
                    [
                        family,
                        r.name,
                        r.language,
                        r.rule,
                        r.prompt_style,
                        level,
                        name,
                        f"{tally.accuracy:.6f}",
                        tally.hits,
                        tally.total,
                    ]
                )
    atomic_write_rows(path, header, rows, delimiter=",")


def plot_radar(series: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    """Radar chart PNG: one panel per benchmark, one axis per language, one polygon per model.

    Every panel shows the six languages; a language that was not evaluated leaves a gap.
    `series` maps benchmark -> model -> language code -> accuracy in percent.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = list(series)
    figure, axes = plt.subplots(
        1, len(panels), subplot_kw={"projection": "polar"}, figsize=(5 * len(panels), 5)
    )
    axes = np.atleast_1d(axes)
    for axis, benchmark in zip(axes, panels):
        models = series[benchmark]
        present = {code for scores in models.values() for code in scores}
        languages = ordered_languages({*LANGUAGES, *present})  # all six axes, as in Figure 9
        angles = np.linspace(0, 2 * np.pi, len(languages), endpoint=False).tolist()
        axis.set_theta_offset(np.pi / 2)
        axis.set_theta_direction(-1)
        for model, scores in models.items():
            values = [scores.get(code, float("nan")) for code in languages]  # a gap where not evaluated
            axis.plot(angles + angles[:1], values + values[:1], marker="o", linewidth=1.5, label=model)
            axis.fill(angles + angles[:1], values + values[:1], alpha=0.1)
        axis.set_xticks(angles)
        axis.set_xticklabels([language_label(code) for code in languages])
        axis.set_ylim(0, 100)
        axis.set_ylabel("accuracy (%)", labelpad=28)
        axis.set_title(benchmark, pad=18)
        axis.legend(loc="lower right", bbox_to_anchor=(1.25, -0.12), fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def radar_series(results: list[Accuracy], model_name: str) -> dict[str, dict[str, dict[str, float]]]:
    """`plot_radar` input for one model's results (overall accuracy in percent)."""
    series: dict[str, dict[str, dict[str, float]]] = {}
    for r in results:
        series.setdefault(benchmark_family(r.name), {}).setdefault(model_name, {})[r.language] = (
            100 * r.overall.accuracy
        )
    return series
