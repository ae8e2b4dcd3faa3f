"""The semi-automatic part: review sheets of sampled items, and importing what reviewers decided.

`--review-sample N` writes `DIR/review/<stem>_<lang>.html` (edit in a browser, export CSV) and the
same rows as `DIR/review/<stem>_<lang>.csv` (edit in a spreadsheet). `apply-review SHEET` checks
every row against the input, journals one review record per item (corrections per turn, or a
rejection) and rebuilds the final files, so later runs keep the reviewers' decisions.
"""

from __future__ import annotations

import csv
import io
import random
from collections import Counter, defaultdict
from pathlib import Path

from llava.data.files import write_atomically
from llava.data.translate.journal import Journal
from llava.data.translate.outputs import JOURNAL, item_hash, read_input, read_manifest, write_outputs
from llava.data.translate.protect import split_turn
from llava.data.translate.review_page import COLUMNS, render_page

TRUE = {"1", "x", "yes", "y", "true", "reject", "rejected"}


class ReviewError(ValueError):
    """A sheet that cannot be applied: wrong run folder, stale rows, a correction that moved <image>."""


def write_review_sheets(out: Path, stem: str, lang: str, items: list[dict], accepted: list[tuple[int, dict]],
                        sample: int, seed: int) -> Path:
    """HTML and CSV sheets of `sample` random accepted items (fewer when fewer were accepted)."""
    chosen = sorted(random.Random(f"{seed}:{lang}").sample(accepted, min(sample, len(accepted))), key=lambda p: p[0])
    rows = [
        {"lang": lang, "item": index, "id": item.get("id", ""), "turn": t, "from": turn["from"],
         "source": items[index]["conversations"][t]["value"], "translation": turn["value"],
         "correction": "", "reject": "", "note": ""}
        for index, item in chosen for t, turn in enumerate(item["conversations"])
    ]
    folder = out / "review"
    csv_path = folder / f"{stem}_{lang}.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(csv_path, buffer.getvalue())
    title = f"Review: {stem} -> {lang} ({len(chosen)} items)"
    write_atomically(folder / f"{stem}_{lang}.html", render_page(title, f"{stem}_{lang}_reviewed.csv", rows))
    return csv_path


def _run_folder(sheet: Path, out: Path | None) -> Path:
    candidates = [out] if out is not None else [sheet.parent.parent, sheet.parent]
    for folder in candidates:
        if folder is not None and read_manifest(folder) is not None:
            return folder
    where = out if out is not None else sheet.parent.parent
    raise ReviewError(f"{where} holds no translation run (no run.json); pass --out DIR, the folder the translator wrote")


def _read_sheet(sheet: Path) -> list[dict]:
    if not sheet.is_file():
        raise ReviewError(f"SHEET {sheet}: no such file")
    with open(sheet, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in ("lang", "item", "turn", "source", "correction", "reject") if rows and c not in rows[0]]
    if not rows or missing:
        raise ReviewError(f"SHEET {sheet}: {'no rows' if not rows else 'missing columns ' + ', '.join(missing)}; "
                          "export it from the review page or keep the CSV's header")
    return rows


def _same_image_layout(source: str, correction: str) -> bool:
    """True when `<image>` sits in the same places: same number, same empty stretches around it."""
    def layout(text: str) -> list[bool]:
        return [segment.core == "" for segment in split_turn(text)]

    return layout(source) == layout(correction)


def apply_review(sheet: Path, out: Path | None = None) -> dict[str, Counter]:
    """Import one sheet; returns per language Counter(reviewed, corrected, rejected)."""
    sheet = Path(sheet)
    rows = _read_sheet(sheet)
    out = _run_folder(sheet, out)
    manifest = read_manifest(out)
    items = read_input(Path(manifest["input"]))
    decisions: dict[tuple[int, str], dict] = defaultdict(lambda: {"turns": {}, "reject": False, "note": ""})
    for number, row in enumerate(rows, 2):
        where = f"SHEET {sheet} line {number}"
        try:
            index, turn, lang = int(row["item"]), int(row["turn"]), row["lang"]
            source = items[index]["conversations"][turn]["value"]
        except (ValueError, IndexError, KeyError):
            raise ReviewError(f"{where}: item {row.get('item')!r} turn {row.get('turn')!r} is not in {manifest['input']}") from None
        if source != row["source"]:
            raise ReviewError(f"{where}: the source text differs from {manifest['input']}; the sheet is stale, "
                              "write a new one with --review-sample")
        decision = decisions[(index, lang)]
        correction = row["correction"]
        if correction.strip() and correction != row.get("translation"):
            if not _same_image_layout(source, correction):
                raise ReviewError(f"{where}: the correction moves, adds or drops <image>; keep it where the source has it")
            decision["turns"][str(turn)] = correction
        if row["reject"].strip().lower() in TRUE:
            decision["reject"], decision["note"] = True, row.get("note", "")
    stats: dict[str, Counter] = defaultdict(Counter)
    with Journal(out / JOURNAL) as journal:
        for (index, lang), decision in decisions.items():
            journal.append({"kind": "review", "item": index, "lang": lang, "src": item_hash(items[index]), **decision})
            stats[lang]["reviewed"] += 1
            stats[lang]["corrected"] += bool(decision["turns"]) and not decision["reject"]
            stats[lang]["rejected"] += decision["reject"]
        write_outputs(out, manifest["stem"], items, manifest["langs"], journal)
    return stats
