"""Reading and writing LLaVA data files: a JSON list of items, or JSONL (one item per line)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def read_llava_file(path: str | Path, flag: str = "--data_path") -> list:
    """The items of one `.json` (a list) or `.jsonl` file; errors name the flag, the file and the line."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag} {path} does not exist")
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            items = []
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        items.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{flag} {path}: line {line_no} is not JSON ({err})") from err
            return items
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{flag} {path}: not valid JSON ({err}); JSONL files must end in .jsonl") from err
    if not isinstance(data, list):
        raise ValueError(f"{flag} {path}: expected a JSON list of items, got {type(data).__name__}")
    return data


def write_atomically(path: str | Path, text: str) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def llava_json_text(items: list[dict]) -> str:
    """A JSON list with one item per line: loads like any LLaVA file, diffs line by line."""
    if not items:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(item, ensure_ascii=False) for item in items) + "\n]\n"
