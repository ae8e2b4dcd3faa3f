"""The run's files: input checks, the manifest, and the final files rebuilt from the journal.

    DIR/<stem>_<lang>.json   accepted items (keep `id`, `image`, every other key; gain `lang`)
    DIR/rejects.jsonl        one row per rejected unit (reason, detail, source, answer) and per
                             item a reviewer rejected
    DIR/report.json          per-language counts and acceptance rate
    DIR/run.json             the input file and its hash (apply-review reads it)
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llava.data.files import llava_json_text, read_llava_file, write_atomically
from llava.data.translate.engine import Unit, recorded
from llava.data.translate.journal import Journal, text_hash

MANIFEST = "run.json"
JOURNAL = "journal.jsonl"
REJECTS = "rejects.jsonl"
REPORT = "report.json"


class InputError(ValueError):
    """The input file is not a LLaVA dataset the translator can read."""


def read_input(path: Path) -> list[dict]:
    """Items of a LLaVA JSON/JSONL file, each checked for a `conversations` list of text turns."""
    try:
        items = read_llava_file(path, flag="INPUT")
    except (FileNotFoundError, ValueError) as err:
        raise InputError(f"{err}; pass a LLaVA .json list or .jsonl file") from None
    problems = []
    for index, item in enumerate(items):
        turns = item.get("conversations") if isinstance(item, dict) else None
        if not isinstance(turns, list) or not turns:
            problems.append(f"item {index}: no 'conversations' list")
        elif not all(isinstance(t, dict) and isinstance(t.get("value"), str) and "from" in t for t in turns):
            problems.append(f"item {index} (id {item.get('id')}): every turn needs 'from' and a text 'value'")
        if len(problems) == 5:
            break
    if problems:
        raise InputError(f"INPUT {path}: {'; '.join(problems)}; fix these items (LLaVA format: "
                         '{"id", "image", "conversations": [{"from": "human", "value": "..."}, ...]})')
    if not items:
        raise InputError(f"INPUT {path}: no items")
    return items


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def output_path(out: Path, stem: str, lang: str) -> Path:
    return out / f"{stem}_{lang}.json"


def item_hash(item: dict) -> str:
    return text_hash(*(str(turn["value"]) for turn in item["conversations"]))


@dataclass
class LanguageReport:
    items: int = 0
    accepted: int = 0
    pending: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> items

    @property
    def acceptance_rate(self) -> float | None:
        finished = self.accepted + sum(self.rejected.values())
        return self.accepted / finished if finished else None

    def as_dict(self) -> dict:
        return {**asdict(self), "rejected": dict(self.rejected), "acceptance_rate": self.acceptance_rate}


def assemble(items: list[dict], lang: str, journal: Journal) -> tuple[list[tuple[int, dict]], list[dict], LanguageReport]:
    """([(index, accepted item)], reject rows, report) for one language, from the journal and reviews."""
    accepted, rejects, report = [], [], LanguageReport(items=len(items))
    for index, item in enumerate(items):
        turns = item["conversations"]
        records = [recorded(journal, Unit(index, t, lang, str(turn["value"]))) for t, turn in enumerate(turns)]
        if any(record is None for record in records):
            report.pending += 1
            continue
        base = {"lang": lang, "item": index, "id": item.get("id")}
        bad = [(t, r) for t, r in enumerate(records) if r["status"] == "reject"]
        if bad:
            report.rejected[bad[0][1]["reason"]] += 1
            rejects += [{**base, "turn": t, "reason": r["reason"], "detail": r["detail"],
                         "source": turns[t]["value"], "answer": r["answer"]} for t, r in bad]
            continue
        review = journal.reviews.get((index, lang))
        if review is not None and review["src"] != item_hash(item):
            review = None  # the source changed after the review
        if review is not None and review["reject"]:
            report.rejected["review"] += 1
            rejects.append({**base, "turn": None, "reason": "review", "detail": review.get("note", ""),
                            "source": None, "answer": None})
            continue
        corrections = review["turns"] if review is not None else {}
        values = [corrections.get(str(t), record["value"]) for t, record in enumerate(records)]
        accepted.append((index, {**item, "lang": lang, "conversations": [
            {**turn, "value": value} for turn, value in zip(turns, values, strict=True)]}))
        report.accepted += 1
    return accepted, rejects, report


def write_outputs(out: Path, stem: str, items: list[dict], langs: list[str], journal: Journal) -> dict[str, LanguageReport]:
    """Rebuild every final file from the journal, each written atomically."""
    reports, all_rejects = {}, []
    for lang in langs:
        accepted, rejects, reports[lang] = assemble(items, lang, journal)
        write_atomically(output_path(out, stem, lang), llava_json_text([item for _, item in accepted]))
        all_rejects += rejects
    write_atomically(out / REJECTS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in all_rejects))
    write_atomically(out / REPORT, json.dumps({lang: r.as_dict() for lang, r in reports.items()}, indent=2) + "\n")
    return reports


def read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_manifest(out: Path, input_path: Path, langs: list[str], source_lang: str) -> None:
    previous = read_manifest(out) or {}
    langs = list(dict.fromkeys([*previous.get("langs", []), *langs]))
    manifest = {"input": str(input_path.resolve()), "input_sha256": file_sha256(input_path),
                "stem": input_path.stem, "langs": langs, "source_lang": source_lang}
    write_atomically(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
