"""The append-only journal: one JSON line per finished (item, turn, language) unit or review.

Every line is written with one `os.write` on an O_APPEND descriptor, so a killed process leaves at
most a torn last line, which the next run cuts off (that unit is simply done again). The final
files are always rebuilt from the journal; the last record for a unit wins. Unit records carry
the answers they used per segment (`cache`), which rebuilds the translation cache on resume.

    {"kind": "unit", "unit": [item, turn, lang], "src": hash, "status": "ok", "value": "...",
     "cache": {key: [answer, reason, detail]}}
    {"kind": "unit", ..., "status": "reject", "reason": "language", "detail": "...", "answer": "..."}
    {"kind": "review", "item": 3, "lang": "zh", "turns": {"1": "corrected"}, "reject": false, "note": ""}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

UnitKey = tuple[int, int, str]


def text_hash(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode("utf-8")).hexdigest()[:16]


class JournalError(ValueError):
    """A journal line in the middle of the file is not JSON: the file was edited or corrupted."""


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.units: dict[UnitKey, dict] = {}
        self.reviews: dict[tuple[int, str], dict] = {}
        self.cache: dict[str, tuple[str, str | None, str]] = {}
        self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # every append ends with a newline: bytes after the last one are torn
        for number, line in enumerate(data[:end].splitlines(), 1):
            if not line.strip():
                continue
            try:
                self._add(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise JournalError(
                    f"{self.path}: line {number} is not a journal record ({err}); the file was edited or "
                    "corrupted. Move it away to start over (finished work is then translated again)."
                ) from err
        if end < len(data):
            logger.warning("%s: dropping an incomplete last line (the previous run was interrupted)", self.path)
            os.truncate(self.path, end)

    def _add(self, record: dict) -> None:
        if record.get("kind") == "review":
            self.reviews[(record["item"], record["lang"])] = record
            return
        item, turn, lang = record["unit"]
        for key, entry in record.pop("cache", {}).items():  # held once, in the cache
            self.cache[key] = tuple(entry)
        self.units[(item, turn, lang)] = record

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        written = 0
        while written < len(line):
            written += os.write(self._fd, line[written:])
        self._add(dict(record))

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
