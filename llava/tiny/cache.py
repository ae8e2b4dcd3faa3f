"""An on-disk cache of converted tokenizers, keyed by the hash of the file they were converted from.

Converting the Qwen2 vocabulary (~2 s) and parsing the SmolLM2 GGUF metadata (~5 s) dominate a tiny-asset
build, and the test suite builds the assets once per session. The cache is only an optimisation: an entry
is used only if its metadata names the same source hash, conversion recipe, format and transformers
version, and the reloaded
tokenizer reproduces the length and probe ids recorded when the entry was written. Anything else (a
missing, stale, corrupt or unreadable entry) is logged and the tokenizer is converted again.

Location: `$PARROT_CACHE_DIR`, else `$XDG_CACHE_HOME/parrot`, else `~/.cache/parrot`. Entries written by
other code or transformers versions are left in place (another environment may share the folder); the
whole folder is safe to delete at any time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from llava.tiny.sources import file_sha256

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
META_FILE = "parrot_tokenizer_cache.json"
# Mixed scripts, digits, accents and a special token: a cheap fingerprint of the encoder.
PROBE_TEXT = "The cat sat on 12 mats. Qual é a cor? 这是什么？ ما لون؟ Şekil? Какого цвета? <|im_end|>"


def cache_root() -> Path:
    """Root folder of Parrot's caches (see the module docstring for the lookup order)."""
    if os.environ.get("PARROT_CACHE_DIR"):
        return Path(os.environ["PARROT_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "parrot"


def cached_tokenizer(
    name: str, source: Path, recipe: str, convert: Callable[[], PreTrainedTokenizerBase]
) -> PreTrainedTokenizerBase:
    """Load the tokenizer converted from `source`, or run `convert()` and store its result.

    Args:
        name: short name of the entry, e.g. "qwen2".
        source: the file the tokenizer is converted from; its SHA-256 keys the entry.
        recipe: a fingerprint of the conversion code (e.g. the hash of its module), so that changed code
            never meets an entry written by the old code.
        convert: builds the tokenizer from `source` (the slow path).
    """
    key = {
        "format": CACHE_FORMAT,
        "source_sha256": file_sha256(source),
        "recipe": recipe,
        "transformers": transformers.__version__,
    }
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    entry = cache_root() / "tokenizers" / f"{name}-{fingerprint[:16]}"
    tokenizer = _load_entry(entry, key)
    if tokenizer is not None:
        logger.debug("Loaded the %s tokenizer from the cache %s", name, entry)
        return tokenizer
    tokenizer = convert()
    _store_entry(entry, tokenizer, key)
    return tokenizer


def _load_entry(entry: Path, key: dict[str, object]) -> PreTrainedTokenizerBase | None:
    meta_path = entry / META_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if any(meta.get(field) != value for field, value in key.items()):
            logger.info("Tokenizer cache %s is stale; converting again", entry)
            return None
        tokenizer = AutoTokenizer.from_pretrained(entry)
        # transformers records these load-time flags as init kwargs; they would leak into every later save.
        for load_flag in ("is_local", "local_files_only"):
            tokenizer.init_kwargs.pop(load_flag, None)
        probe_ids = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
        if len(tokenizer) != meta["length"] or probe_ids != meta["probe_ids"]:
            logger.warning("Tokenizer cache %s does not reproduce its recorded ids; converting again", entry)
            return None
        return tokenizer
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("Tokenizer cache %s is unreadable (%s); converting again", entry, error)
        return None


def _store_entry(entry: Path, tokenizer: PreTrainedTokenizerBase, key: dict[str, object]) -> None:
    """Write the entry into a temporary sibling, then rename it into place (safe against concurrent builds)."""
    meta = dict(key)
    meta["length"] = len(tokenizer)
    meta["probe_ids"] = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    staging: Path | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        tokenizer.save_pretrained(staging)
        (staging / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(staging, entry)
    except OSError as error:
        logger.warning("Could not write the tokenizer cache %s (%s); continuing without it", entry, error)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
