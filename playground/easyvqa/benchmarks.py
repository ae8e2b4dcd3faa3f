"""Test sets in VLMEvalKit TSV format from the easy-VQA *test* split: MMMB_* and MMBench_dev_*.

Layout decisions (the evaluation reads these files):
- Every test image carries exactly one scoring unit, so rows that share an image are rows that
  are scored together: a `yes_no` image has two rows, one answered Yes and one answered No (the
  MMMB pair rule: the pair counts only if both are right); a `color` or `shape` image has one
  4-option row. Images take the three roles in turn, so each category has the same number of units.
- Yes/no rows have A = Yes, B = No in the row's language; columns C and D are present and empty
  (pandas and VLMEvalKit read them as NaN, i.e. absent options).
- The same `index` is the same item in every language: same image, template, slot words and
  option order; only the words differ.
- `image` holds the base64 PNG on the first row of each image and that row's index on later rows.
- MMBench_dev_* repeats every item with its options rotated by k (index + k * 1,000,000,
  k = 1 .. options - 1) and the answer letter moved with its option (circular evaluation).
"""

from __future__ import annotations

import base64
import csv
import random
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from playground.easyvqa.source import image_file, read_image_attributes
from playground.easyvqa.training import draw_question, mcq_options
from playground.easyvqa.translations import (
    LANGUAGES,
    NO,
    YES,
    Template,
    TranslationTable,
    benchmark_code,
)

COLUMNS = ("index", "question", "A", "B", "C", "D", "answer", "category", "l2-category", "split", "image")
OPTION_LETTERS = "ABCD"
CIRCULAR_OFFSET = 1_000_000
IMAGE_ROLES = ("yes_no", "color", "shape")
L2_CATEGORY = {"color": "recognition", "shape": "recognition", "yes_no": "existence"}
SPLIT = "dev"


@dataclass(frozen=True)
class TestItem:
    """One benchmark row before rendering; keys (colour, shape, yes/no) are English."""

    index: int
    image_id: int
    category: str  # color | shape | yes_no
    template: Template
    color: str | None  # slot words the question is asked with
    shape: str | None
    answer: str
    options: tuple[str, ...]


def draw_test_items(table: TranslationTable, image_ids: list[int], rng: random.Random) -> list[TestItem]:
    """Items for the given test images, indexed 0.. in order; roles cycle yes_no, color, shape."""
    items: list[TestItem] = []
    for position, image_id in enumerate(tqdm(image_ids, desc="test items")):
        color, shape = read_image_attributes(image_file("test", image_id))
        role = IMAGE_ROLES[position % len(IMAGE_ROLES)]
        if role == "yes_no":
            pair = [draw_question(table, role, color, shape, rng, wanted) for wanted in (YES, NO)]
            rng.shuffle(pair)
        else:
            pair = [draw_question(table, role, color, shape, rng)]
        for template, slot_color, slot_shape, answer in pair:
            options = tuple(mcq_options(role, answer, rng))
            items.append(TestItem(len(items), image_id, role, template, slot_color, slot_shape, answer, options))
    return items


def _rows(table: TranslationTable, items: list[TestItem], lang: str, rotations: bool) -> list[list[str]]:
    """TSV rows of one language; with `rotations`, the circular copies follow the originals."""
    copies = [(item, 0) for item in items]
    if rotations:
        most_options = max((len(item.options) for item in items), default=0)
        copies += [(item, k) for k in range(1, most_options) for item in items if k < len(item.options)]
    first_row: dict[int, int] = {}
    rows = []
    for item, k in copies:
        options = item.options[k:] + item.options[:k]
        words = [table.answer(key, lang) for key in options] + [""] * (len(OPTION_LETTERS) - len(options))
        index = item.index + k * CIRCULAR_OFFSET
        if item.image_id in first_row:
            image = str(first_row[item.image_id])
        else:
            first_row[item.image_id] = index
            image = base64.b64encode(image_file("test", item.image_id).read_bytes()).decode("ascii")
        question = table.question(item.template, lang, color=item.color, shape=item.shape)
        answer = OPTION_LETTERS[options.index(item.answer)]
        rows.append([str(index), question, *words, answer, item.category, L2_CATEGORY[item.category], SPLIT, image])
    return rows


def write_benchmarks(table: TranslationTable, items: list[TestItem], out_dir: Path) -> dict[str, dict]:
    """Write MMMB_{lang}.tsv and MMBench_dev_{lang}.tsv for every language; return row counts."""
    counts: dict[str, dict] = {}
    for lang in tqdm(LANGUAGES, desc="benchmark TSVs"):
        for family, rotations in (("MMMB", False), ("MMBench_dev", True)):
            name = f"{family}_{benchmark_code(lang)}.tsv"
            rows = _rows(table, items, lang, rotations)
            with (out_dir / name).open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
                writer.writerow(COLUMNS)
                writer.writerows(rows)
            per_category: dict[str, int] = {}
            for row in rows:
                per_category[row[7]] = per_category.get(row[7], 0) + 1
            counts[name] = {"lang": lang, "rows": len(rows), "per_category": per_category}
    return counts
