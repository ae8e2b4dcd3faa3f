"""MME (yes/no questions): answer extraction and VLMEvalKit's MME rating.

Layout (VLMEvalKit's `MME.tsv`): `index`, `question` (it already ends with "Please answer yes or
no."), `answer` (`Yes`/`No`), `category` (the subtask), `image_path` (the image's name: the two
questions about one image share it), `image`. VLMEvalKit's prediction files drop `image` and add
`prediction`; they score the same, as the pairs come from `image_path`.

Extraction (`extract_yes_no`, VLMEvalKit's rule): the prediction in lower case, punctuation taken
out, split into words; `Yes` when `yes` is a word and `no` is not, `No` the other way round,
otherwise unknown (scored wrong).

Rating (`rate_mme`, as VLMEvalKit's `MME_rating`): per subtask, `acc` = 100 x the fraction of
questions right, `acc+` = 100 x the fraction of images whose questions are all right (pairs by
`image_path`), the subtask score = `acc + acc+` (0-200). `perception` sums the scores of the ten
perception subtasks, `cognition` (VLMEvalKit calls it `reasoning`) those of the four cognition
subtasks; `total` is their sum (0-2800 when all fourteen are present). A subtask missing from the
file adds nothing and is named in `missing`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from llava.eval.benchmark import Benchmark, BenchmarkFileError, BenchmarkItem
from llava.eval.extraction import Extraction

logger = logging.getLogger(__name__)

PERCEPTION = (
    "OCR",
    "artwork",
    "celebrity",
    "color",
    "count",
    "existence",
    "landmark",
    "position",
    "posters",
    "scene",
)
COGNITION = ("code_reasoning", "commonsense_reasoning", "numerical_calculation", "text_translation")
SUBTASKS = PERCEPTION + COGNITION
PAIR_COLUMN = "image_path"
YES_NO = ("Yes", "No")

# VLMEvalKit's punctuation handling: each mark is dropped when it stands next to a space (or the
# text has a digit,digit comma), else replaced by a space; a period not followed by a digit is dropped.
_MARKS = ";/[]\"{}()=+\\_->< @`,?!".replace(" ", "")
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")


def _strip_punctuation(text: str) -> str:
    out = text
    for mark in _MARKS:
        if f"{mark} " in text or f" {mark}" in text or _DIGIT_COMMA.search(text):
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out)


def extract_yes_no(prediction: str | None) -> Extraction:
    """`Yes`, `No`, or None (unknown) from a free-form answer, by VLMEvalKit's rule."""
    words = _strip_punctuation((prediction or "").lower()).split()
    yes, no = "yes" in words, "no" in words
    if yes and not no:
        return Extraction("Yes", "yes/no word")
    if no and not yes:
        return Extraction("No", "yes/no word")
    return Extraction(None, "none")


@dataclass
class Subtask:
    questions: int = 0
    right: int = 0
    images: dict[str, list[bool]] = field(default_factory=dict)

    @property
    def acc(self) -> float:
        return 100 * self.right / self.questions if self.questions else 0.0

    @property
    def acc_plus(self) -> float:
        if not self.images:
            return 0.0
        return 100 * sum(all(hits) for hits in self.images.values()) / len(self.images)

    @property
    def score(self) -> float:
        return self.acc + self.acc_plus


@dataclass
class MMEResult:
    """The MME rating of one predictions file."""

    name: str
    language: str
    prompt_style: str = "ours"
    rule: str = "mme"
    subtasks: dict[str, Subtask] = field(default_factory=dict)
    rows: int = 0
    rows_with_issues: int = 0
    no_answer: int = 0

    def _sum(self, names: tuple[str, ...]) -> float:
        return sum(self.subtasks[name].score for name in names if name in self.subtasks)

    @property
    def perception(self) -> float:
        return self._sum(PERCEPTION)

    @property
    def cognition(self) -> float:
        return self._sum(COGNITION)

    @property
    def total(self) -> float:
        return self.perception + self.cognition

    @property
    def missing(self) -> list[str]:
        return [name for name in SUBTASKS if name not in self.subtasks]


@dataclass
class YesNoRow:
    item: BenchmarkItem
    extraction: Extraction
    hit: bool
    issues: list[str] = field(default_factory=list)


def score_yes_no_rows(benchmark: Benchmark) -> list[YesNoRow]:
    """Extract and judge every row; problems (bad answer, unknown subtask, empty prediction) name
    the file, the row and the column, are logged, and make the row wrong."""
    if PAIR_COLUMN not in benchmark.columns:
        raise BenchmarkFileError(
            f"{benchmark.path}: MME needs the column {PAIR_COLUMN!r} (the image's name) to pair questions; "
            "score the VLMEvalKit MME.tsv layout (index, question, answer, category, image_path)"
        )
    scored = []
    for item in benchmark.items:
        issues = list(item.issues)
        if item.answer not in YES_NO:
            issues.append(f"column 'answer' is {item.answer!r}, not Yes or No")
        category = item.get("category")
        if category is None:
            issues.append("column 'category' is empty")
        elif category.strip() not in SUBTASKS:
            issues.append(f"column 'category' names {category.strip()!r}, not an MME subtask")
        if not (item.get(PAIR_COLUMN) or "").strip():
            issues.append(f"column {PAIR_COLUMN!r} is empty")
        recorded = item.get("issue")
        if recorded:
            issues += [issue for issue in recorded.split("; ") if issue not in issues]
        elif not item.prediction.strip():
            issues.append("column 'prediction' is empty")
        extraction = extract_yes_no(item.prediction)
        if issues:
            logger.warning("%s %s: %s; scored wrong", benchmark.path.name, item.describe(), "; ".join(issues))
        hit = not issues and extraction.letter == item.answer
        scored.append(YesNoRow(item=item, extraction=extraction, hit=hit, issues=issues))
    return scored


def rate_mme(benchmark: Benchmark, rows: list[YesNoRow], prompt_style: str = "ours") -> MMEResult:
    """VLMEvalKit's MME rating of scored rows (see the module docstring)."""
    result = MMEResult(name=benchmark.name, language=benchmark.language, prompt_style=prompt_style)
    result.rows = len(rows)
    result.rows_with_issues = sum(bool(row.issues) for row in rows)
    result.no_answer = sum(row.extraction.letter is None for row in rows)
    for row in rows:
        category = (row.item.get("category") or "").strip()
        if category not in SUBTASKS:
            continue  # an unknown subtask cannot be rated; the row was logged with its problem
        subtask = result.subtasks.setdefault(category, Subtask())
        subtask.questions += 1
        subtask.right += int(row.hit)
        image = (row.item.get(PAIR_COLUMN) or f"row {row.item.row}").strip()
        subtask.images.setdefault(image, []).append(row.hit)
    for name, subtask in result.subtasks.items():
        odd = [image for image, hits in subtask.images.items() if len(hits) != 2]
        if odd:
            logger.warning(
                "%s: subtask %s has %d image(s) without exactly two questions (first: %s); acc+ counts "
                "an image right when all its questions are",
                benchmark.path.name,
                name,
                len(odd),
                odd[0],
            )
    if result.missing:
        logger.warning("%s: MME subtasks missing from the file: %s", benchmark.path.name, ", ".join(result.missing))
    return result
