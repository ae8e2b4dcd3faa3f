"""Scoring rules and accuracy reports.

Rules (a *unit* is what counts once in the accuracy):

- `vanilla`: every row is a unit.
- `circular` (MMBench): option-rotated copies of a question sit in the file at index + k * 1e6;
  the unit is `index % 1_000_000` and it is right only if every copy present is right.
- `pair` (MMMB, paper section 3.3): the questions asked about one image form a unit, right only
  if all of them (normally the Yes and the No question) are right. The pair key is the image:
  `BenchmarkItem.image_key`, the index of the first row holding that image (rows whose `image`
  names that row or repeats its data). Without an `image` or `image_index` column the pairs are
  unknown; every row is then its own unit and a warning says so.

Default rule by dataset name: `mmbench`/`ccbench` -> circular, `mmmb` -> pair, otherwise vanilla
(`default_rule`); the `--rule` flag overrides it. Rows with a problem (bad row, missing answer,
empty prediction, image that does not decode) are scored wrong and stay in the counts. A unit's
category, l2-category and split are those of its lowest-index row.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field

from llava.eval.benchmark import Benchmark, BenchmarkItem
from llava.eval.extraction import Extraction, extract_answer
from llava.eval.judge import Judge, JudgeQuery

logger = logging.getLogger(__name__)

RULES = ("vanilla", "circular", "pair")
CIRCULAR_MODULUS = 1_000_000


def default_rule(name: str) -> str:
    """The documented rule for a dataset name (see the module docstring)."""
    lowered = name.lower()
    if "mmbench" in lowered or "ccbench" in lowered:
        return "circular"
    if "mmmb" in lowered:
        return "pair"
    return "vanilla"


@dataclass
class ScoredRow:
    """One row with its extracted answer and verdict; `issues` name everything wrong with it."""

    item: BenchmarkItem
    extraction: Extraction
    hit: bool
    issues: list[str] = field(default_factory=list)


@dataclass
class Tally:
    hits: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float:
        """Fraction right in [0, 1] (VLMEvalKit's `_acc.csv` convention); 0 when empty."""
        return self.hits / self.total if self.total else 0.0

    def add(self, hit: bool) -> None:
        self.hits += int(hit)
        self.total += 1


@dataclass
class Accuracy:
    """Accuracy of one benchmark file under one rule."""

    name: str
    language: str
    rule: str
    overall: Tally = field(default_factory=Tally)
    prompt_style: str = "ours"  # `llava.eval.prompts.PROMPT_STYLES`: how the answers were asked for
    by_category: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_l2_category: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    # split -> (level, name) -> tally, level in {"overall", "l2-category", "category"}: `_acc.csv` rows
    per_split: dict[str, dict[tuple[str, str], Tally]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Tally))
    )
    rows: int = 0
    rows_with_issues: int = 0
    no_answer: int = 0


def score_rows(benchmark: Benchmark, judge: Judge | None = None) -> list[ScoredRow]:
    """Extract and judge every row of a predictions file (one that has a `prediction` column)."""
    scored = []
    for item in benchmark.items:
        issues = list(item.issues)
        answer = item.answer
        if answer is None:
            issues.append("missing answer")
        elif answer not in item.options:
            issues.append(f"answer {answer!r} is not one of the options {''.join(item.options)}")
        recorded = item.get("issue")  # a problem met while generating (an image that did not decode)
        if recorded:
            issues += [issue for issue in recorded.split("; ") if issue not in issues]
        elif not item.prediction.strip() and not item.issues:
            issues.append("empty prediction")
        extraction = extract_answer(item.prediction, item.options)
        if extraction.letter is None and judge is not None and item.prediction.strip():
            extraction = _ask_judge(judge, item, benchmark.language) or extraction
        if issues:
            logger.warning("%s %s: %s; scored wrong", benchmark.path.name, item.describe(), "; ".join(issues))
        hit = not issues and extraction.letter == answer
        scored.append(ScoredRow(item=item, extraction=extraction, hit=hit, issues=issues))
    return scored


def _ask_judge(judge: Judge, item: BenchmarkItem, language: str) -> Extraction | None:
    reply = judge(JudgeQuery(item.question, item.options, item.prediction, language))
    if not reply:
        return None
    letter = extract_answer(reply, item.options).letter
    return Extraction(letter, "judge") if letter else None


def _unit_key(row: ScoredRow, rule: str) -> Hashable:
    item = row.item
    if rule == "circular" and item.index is not None:
        return item.index % CIRCULAR_MODULUS
    if rule == "pair" and item.image_key is not None:
        return item.image_key
    return ("row", item.row)


def group_units(rows: list[ScoredRow], rule: str) -> list[list[ScoredRow]]:
    """Rows grouped into scoring units under `rule`, each unit sorted by index."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    units: dict[Hashable, list[ScoredRow]] = {}
    for row in rows:
        units.setdefault(_unit_key(row, rule), []).append(row)
    return [
        sorted(unit, key=lambda r: (r.item.index is None, r.item.index or 0, r.item.row))
        for unit in units.values()
    ]


def accuracy(
    benchmark: Benchmark, rows: list[ScoredRow], rule: str | None = None, prompt_style: str = "ours"
) -> Accuracy:
    """Overall, per-split, per-category and per-l2-category accuracy of scored rows."""
    rule = rule or default_rule(benchmark.name)
    if rule == "pair" and rows and all(row.item.image_key is None for row in rows):
        logger.warning(
            "%s: pair rule asked but no row names its image (no `image` or `image_index` column); "
            "each row is scored on its own. Score the file that carries the image column instead.",
            benchmark.path.name,
        )
    result = Accuracy(name=benchmark.name, language=benchmark.language, rule=rule, prompt_style=prompt_style)
    result.rows = len(rows)
    result.rows_with_issues = sum(bool(row.issues) for row in rows)
    result.no_answer = sum(row.extraction.letter is None for row in rows)
    for unit in group_units(rows, rule):
        hit = all(row.hit for row in unit)
        lead = unit[0].item
        split = lead.get("split") or "none"
        result.overall.add(hit)
        result.per_split[split][("overall", "Overall")].add(hit)
        for level, tallies in (("category", result.by_category), ("l2-category", result.by_l2_category)):
            name = lead.get(level)
            if name:
                tallies[name].add(hit)
                result.per_split[split][(level, name)].add(hit)
    return result
