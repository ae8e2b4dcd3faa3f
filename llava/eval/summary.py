"""Per-benchmark summaries that merge instead of shrinking.

Each benchmark family (`reports.benchmark_family`: MMMB, MMBench, or a file's name without its
language) has its own files, so two benchmarks scored into one folder never collide:

    summary_<slug>.md, summary_<slug>.csv   the tables of `llava.eval.reports`
    summary_<slug>.json                     every entry's counts (what later merges read back)
    radar_<slug>.png                        the family's radar chart

`<slug>` is the family in lower case with runs of other characters as `_` (`mmmb`, `mmbench`).
Writing a summary reads the family's existing `summary_<slug>.json` first: an entry (one per
language) that was scored again is replaced, the others are kept, so scoring one predictions file
never drops the languages scored before. The JSON also names the model; a summary of another model
is refused rather than mixed in.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from llava.eval.reports import (
    atomic_write_text,
    benchmark_family,
    plot_radar,
    radar_series,
    summary_markdown,
    write_summary_csv,
)
from llava.eval.scoring import Accuracy, Tally


class SummaryMismatchError(ValueError):
    """An existing summary belongs to another model (or cannot be read)."""


def family_slug(family: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", family.lower()).strip("_") or "benchmark"


def summary_paths(directory: Path, family: str) -> dict[str, Path]:
    """The family's summary files in `directory`: keys md, csv, json, radar."""
    slug = family_slug(family)
    return {
        "md": directory / f"summary_{slug}.md",
        "csv": directory / f"summary_{slug}.csv",
        "json": directory / f"summary_{slug}.json",
        "radar": directory / f"radar_{slug}.png",
    }


def _tallies(values: dict[str, list[int]]) -> defaultdict[str, Tally]:
    return defaultdict(Tally, {name: Tally(hits, total) for name, (hits, total) in values.items()})


def identity_fields(result) -> dict:
    """What names a scored file in every summary kind (accuracy, MME): file, language, rule, prompt style."""
    return {"name": result.name, "language": result.language, "rule": result.rule, "prompt_style": result.prompt_style}


def accuracy_to_dict(result: Accuracy) -> dict:
    return {
        **identity_fields(result),
        "overall": [result.overall.hits, result.overall.total],
        "by_category": {k: [t.hits, t.total] for k, t in sorted(result.by_category.items())},
        "by_l2_category": {k: [t.hits, t.total] for k, t in sorted(result.by_l2_category.items())},
        "per_split": [
            [split, level, name, tally.hits, tally.total]
            for split, tallies in sorted(result.per_split.items())
            for (level, name), tally in sorted(tallies.items())
        ],
        "rows": result.rows,
        "rows_with_issues": result.rows_with_issues,
        "no_answer": result.no_answer,
    }


def accuracy_from_dict(entry: dict) -> Accuracy:
    result = Accuracy(
        name=entry["name"],
        language=entry["language"],
        rule=entry["rule"],
        prompt_style=entry.get("prompt_style", "ours"),  # summaries written before the styles
        overall=Tally(*entry["overall"]),
        by_category=_tallies(entry["by_category"]),
        by_l2_category=_tallies(entry["by_l2_category"]),
        rows=entry["rows"],
        rows_with_issues=entry["rows_with_issues"],
        no_answer=entry["no_answer"],
    )
    for split, level, name, hits, total in entry["per_split"]:
        result.per_split[split][(level, name)] = Tally(hits, total)
    return result


def read_summary(path: Path, model_name: str) -> list[Accuracy]:
    """The entries of an existing `summary_<slug>.json` (none when absent)."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [accuracy_from_dict(entry) for entry in data["results"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise SummaryMismatchError(
            f"{path} cannot be read ({err}); move it away (or pass --summary-dir elsewhere) to start a new summary"
        ) from None
    if data.get("model") != model_name:
        raise SummaryMismatchError(
            f"{path} summarises model {data.get('model')!r}, not {model_name!r}: write this model's summary "
            f"elsewhere (--summary-dir / --output-dir) or pass --model-name {data.get('model')}"
        )
    return entries


def merge_results(earlier: list[Accuracy], new: list[Accuracy]) -> list[Accuracy]:
    """`earlier` with every entry of a language scored again in `new` replaced; new languages appended."""
    replaced = {result.language: result for result in new}
    merged = [replaced.pop(result.language, result) for result in earlier]
    return merged + [result for result in new if result.language in replaced]


def write_summaries(results: list[Accuracy], directory: Path, model_name: str) -> str:
    """Merge `results` into each family's summary files in `directory`; return one markdown summary of
    every family touched (what the command lines print)."""
    directory.mkdir(parents=True, exist_ok=True)
    families: dict[str, list[Accuracy]] = {}
    for result in results:
        families.setdefault(benchmark_family(result.name), []).append(result)
    merged_all = {}
    for family, members in families.items():
        paths = summary_paths(directory, family)
        merged_all[family] = merge_results(read_summary(paths["json"], model_name), members)
    for family, merged in merged_all.items():
        paths = summary_paths(directory, family)
        record = {"model": model_name, "benchmark": family, "results": [accuracy_to_dict(r) for r in merged]}
        atomic_write_text(paths["json"], json.dumps(record, ensure_ascii=False, indent=1) + "\n")
        atomic_write_text(paths["md"], summary_markdown(merged, model_name))
        write_summary_csv(merged, paths["csv"])
        plot_radar(radar_series(merged, model_name), paths["radar"])
    return summary_markdown([r for merged in merged_all.values() for r in merged], model_name)
