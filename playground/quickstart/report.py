"""The quickstart's output files: results table (markdown + CSV), radar chart, expert distribution,
and the ablation's table and grouped bar chart.

Numbers are percentages. MMMB units: a yes/no image counts once, right only if both its Yes and its
No question are right (the paper's pair rule); colour and shape MCQs count singly.
"""

from __future__ import annotations

import csv
from pathlib import Path

from llava.eval.languages import LANGUAGE_NAMES
from llava.eval.reports import plot_radar
from playground.easyvqa.translations import LANGUAGES
from playground.quickstart.evaluate import Evaluation

CATEGORY_LABELS = {"color": "colour (MCQ)", "shape": "shape (MCQ)", "yes_no": "yes/no (pairs)"}
TARGETS = {"accuracy_en": 90.0, "accuracy_other": 85.0, "in_language": 95.0}


def metric_rows(evaluation: Evaluation) -> dict[str, dict[str, float]]:
    """Row label -> language -> percent, in table order."""
    rows: dict[str, dict[str, float]] = {"MMMB overall": {}}
    for lang, result in evaluation.mmmb.items():
        rows["MMMB overall"][lang] = 100 * result.overall.accuracy
        for category, label in CATEGORY_LABELS.items():
            if category in result.by_category:
                rows.setdefault(label, {})[lang] = 100 * result.by_category[category].accuracy
    rows["free-form: answer in the question's language"] = {
        lang: 100 * r.in_language_share for lang, r in evaluation.freeform.items()
    }
    rows["free-form: right answer"] = {lang: 100 * r.accuracy for lang, r in evaluation.freeform.items()}
    return rows


def markdown_table(rows: dict[str, dict[str, float]], first_column: str) -> list[str]:
    header = f"| {first_column} | " + " | ".join(LANGUAGES) + " |"
    lines = [header, "|---" * (len(LANGUAGES) + 1) + "|"]
    for label, cells in rows.items():
        values = [f"{cells[lang]:.1f}" if lang in cells else "-" for lang in LANGUAGES]
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return lines


def target_check(evaluation: Evaluation) -> list[str]:
    """One line per language: does it meet the quality targets of the quickstart?"""
    lines = []
    for lang in LANGUAGES:
        if lang not in evaluation.mmmb:
            continue
        accuracy = 100 * evaluation.mmmb[lang].overall.accuracy
        wanted = TARGETS["accuracy_en"] if lang == "en" else TARGETS["accuracy_other"]
        in_language = 100 * evaluation.freeform[lang].in_language_share
        verdict = "met" if accuracy >= wanted and in_language >= TARGETS["in_language"] else "NOT met"
        lines.append(
            f"- {LANGUAGE_NAMES[lang]}: accuracy {accuracy:.1f}% (target {wanted:.0f}%), free-form in language "
            f"{in_language:.1f}% (target {TARGETS['in_language']:.0f}%): {verdict}"
        )
    return lines


def routing_lines(evaluation: Evaluation) -> list[str]:
    """The routing diagnostics per prompt language (`parrot_moe.diagnostics`) and the top expert."""
    if not evaluation.routing:
        return ["The projector does not route (no MoE)."]
    from parrot_moe.diagnostics import diagnose, diagnostics_markdown

    ordered = {lang: evaluation.routing[lang] for lang in LANGUAGES if lang in evaluation.routing}
    top = []
    for lang, record in ordered.items():
        share = record.probs.mean(0)
        top.append(f"- {lang}: expert {int(share.argmax())} ({100 * float(share.max()):.1f} % mean share)")
    return [
        "Could the router separate the languages (guidance → language: its input, H'_v, lies nearest its",
        "own language's centroid), and does it (routing entropy / ln E: 1 is uniform; routing → language:",
        "the same test on P)? A logit spread well below 1 keeps the softmax near-uniform.",
        "",
        *diagnostics_markdown(diagnose(ordered)),
        "",
        "Top expert per language:",
        "",
        *top,
    ]


def write_results(evaluation: Evaluation, out_dir: Path, header_lines: list[str]) -> str:
    """Write `results.md` and `results.csv` into `out_dir`; return the markdown table."""
    rows = metric_rows(evaluation)
    table = "\n".join(markdown_table(rows, "metric (%)"))
    examples = [
        f"- {lang}: {question!r} -> {reply!r} (expected {expected!r})"
        for lang, result in evaluation.freeform.items()
        for question, expected, reply in result.examples[:1]
    ]
    counts = [
        f"- {lang}: {r.overall.total} units ({r.rows} rows), {r.no_answer} rows with no readable answer"
        for lang, r in evaluation.mmmb.items()
    ]
    markdown = "\n".join(
        [
            f"# Quickstart results: {evaluation.name}",
            "",
            *header_lines,
            "",
            "Accuracy on the easy-VQA test split (MMMB layout). Yes/no questions count as pairs (both right),",
            "colour and shape multiple-choice questions singly.",
            "",
            table,
            "",
            "## Quality targets",
            "",
            *target_check(evaluation),
            "",
            "## Units scored",
            "",
            *counts,
            "",
            "## Free-form replies (one example per language)",
            "",
            *examples,
            "",
            "## Routing per prompt language (MMMB prompts)",
            "",
            *routing_lines(evaluation),
            "",
        ]
    )
    (out_dir / "results.md").write_text(markdown, encoding="utf-8")
    write_results_csv({evaluation.name: evaluation}, out_dir / "results.csv")
    return table


def write_results_csv(evaluations: dict[str, Evaluation], path: Path) -> None:
    """Long form: model, language, metric, percent, hits, total."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "language", "metric", "percent", "hits", "total"])
        for name, evaluation in evaluations.items():
            for lang, result in evaluation.mmmb.items():
                tallies = {"MMMB overall": result.overall}
                tallies.update({CATEGORY_LABELS.get(c, c): t for c, t in sorted(result.by_category.items())})
                for metric, tally in tallies.items():
                    writer.writerow([name, lang, metric, f"{100 * tally.accuracy:.2f}", tally.hits, tally.total])
            for lang, probe in evaluation.freeform.items():
                writer.writerow([name, lang, "free-form: answer in the question's language",
                                 f"{100 * probe.in_language_share:.2f}", probe.in_language, probe.asked])
                writer.writerow([name, lang, "free-form: right answer", f"{100 * probe.accuracy:.2f}",
                                 probe.correct, probe.asked])


def write_radar(evaluations: dict[str, Evaluation], path: Path) -> None:
    """Radar chart across the six languages (paper Fig 9 style), one polygon per model."""
    series = {
        "MMMB (easy-VQA)": {
            name: {lang: 100 * r.overall.accuracy for lang, r in evaluation.mmmb.items()}
            for name, evaluation in evaluations.items()
        }
    }
    plot_radar(series, path)


def write_expert_distribution(evaluation: Evaluation, out_dir: Path) -> Path | None:
    """`expert_distribution.png` and `.csv` (Fig 5c style); None when the model has no MoE."""
    if not evaluation.routing:
        return None
    from parrot_moe.analysis import plot_expert_distribution, write_csv

    ordered = {lang: evaluation.routing[lang] for lang in LANGUAGES if lang in evaluation.routing}
    write_csv(ordered, out_dir / "expert_distribution.csv")
    path = out_dir / "expert_distribution.png"
    plot_expert_distribution(ordered, path, title="Expert share per prompt language (MMMB prompts)")
    return path


def write_ablation(evaluations: dict[str, Evaluation], out_dir: Path, header_lines: list[str]) -> str:
    """`ablation.md`, `ablation.csv` and `ablation.png` (grouped bars: languages x variants)."""
    accuracy = {
        name: {lang: 100 * r.overall.accuracy for lang, r in e.mmmb.items()} for name, e in evaluations.items()
    }
    in_language = {
        name: {lang: 100 * r.in_language_share for lang, r in e.freeform.items()} for name, e in evaluations.items()
    }
    table = "\n".join(markdown_table(accuracy, "MMMB accuracy (%)"))
    markdown = "\n".join(
        [
            "# Ablation (paper Fig 5a shape on the toy)",
            "",
            *header_lines,
            "",
            table,
            "",
            *markdown_table(in_language, "free-form in the question's language (%)"),
            "",
        ]
    )
    (out_dir / "ablation.md").write_text(markdown, encoding="utf-8")
    write_results_csv(evaluations, out_dir / "ablation.csv")
    plot_grouped_bars(accuracy, out_dir / "ablation.png")
    return table


def plot_grouped_bars(values: dict[str, dict[str, float]], path: Path) -> None:
    """Grouped bar chart: one group per language, one bar per model (percent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(values)
    positions = np.arange(len(LANGUAGES))
    width = 0.8 / max(1, len(models))
    figure, axis = plt.subplots(figsize=(9, 4.5))
    for number, model in enumerate(models):
        heights = [values[model].get(lang, float("nan")) for lang in LANGUAGES]
        axis.bar(positions + (number - (len(models) - 1) / 2) * width, heights, width, label=model)
    axis.set_xticks(positions)
    axis.set_xticklabels([LANGUAGE_NAMES[lang] for lang in LANGUAGES])
    axis.set_ylabel("MMMB accuracy (%)")
    axis.set_ylim(0, 100)
    axis.set_title("Ablation: projector and stage-2 data")
    # Below the axes: bars can reach any height, so no corner inside the plot is safe.
    axis.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(models), frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
