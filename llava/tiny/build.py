"""Build the five offline tiny-asset folders (`qwen2`, `llama`, `clip`, `chinese_clip`, `siglip`) under one
directory.

Each folder is written into a temporary sibling and renamed into place, with a marker file written last,
so a folder is either complete or absent. A complete folder whose marker records the same seed, sizes and
tokenizer source is kept; one recorded with different settings is rebuilt; a folder without our marker is
not ours, so it is only replaced under `force=True`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from llava.tiny.models import (
    LLM_FIELDS,
    VISION_FIELDS,
    TinySizes,
    write_tiny_chinese_clip,
    write_tiny_clip,
    write_tiny_llama,
    write_tiny_qwen2,
    write_tiny_siglip,
)
from llava.tiny.sources import file_sha256, qwen_vocab_path, smollm2_gguf_path
from llava.tiny.text_tokenizers import TOKENIZER_RECIPE, build_qwen2_tokenizer, build_smollm2_tokenizer

logger = logging.getLogger(__name__)

ASSET_NAMES = ("qwen2", "llama", "clip", "chinese_clip", "siglip")
MARKER_FILE = "parrot_tiny_asset.json"
ASSET_FORMAT = 1
_LLM_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)
_VISION_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
REQUIRED_FILES = {"qwen2": _LLM_FILES, "llama": _LLM_FILES, **dict.fromkeys(("clip", "chinese_clip", "siglip"), _VISION_FILES)}


def asset_spec(name: str, sizes: TinySizes, seed: int) -> dict[str, object]:
    """What the folder `name` depends on; recorded in its marker and compared on the next build."""
    spec: dict[str, object] = {"asset": name, "format": ASSET_FORMAT, "seed": seed}
    if name in ("qwen2", "llama"):
        spec["sizes"] = sizes.subset(LLM_FIELDS)
        source = qwen_vocab_path() if name == "qwen2" else smollm2_gguf_path()
        spec["tokenizer_source_sha256"] = file_sha256(source)
        spec["tokenizer_recipe"] = TOKENIZER_RECIPE
    else:
        spec["sizes"] = sizes.subset(VISION_FIELDS)
    return spec


@lru_cache(maxsize=4)
def _shared_tokenizer(name: str, source_sha256: str) -> PreTrainedTokenizerBase:
    """One tokenizer per source file and process: loading Qwen2's (~2 s) dominates repeated builds.

    Private to this module: the writers only set `model_max_length` before saving, and never hand it out.
    """
    return build_qwen2_tokenizer() if name == "qwen2" else build_smollm2_tokenizer()


def _writer(name: str, sizes: TinySizes, seed: int, spec: dict[str, object]) -> Callable[[Path], None]:
    if name in ("qwen2", "llama"):
        tokenizer = _shared_tokenizer(name, str(spec["tokenizer_source_sha256"]))
        write_llm = write_tiny_qwen2 if name == "qwen2" else write_tiny_llama
        return lambda out: write_llm(out, tokenizer, sizes, seed)
    if name == "clip":
        return lambda out: write_tiny_clip(out, sizes, seed)
    if name == "chinese_clip":
        return lambda out: write_tiny_chinese_clip(out, sizes, seed)
    return lambda out: write_tiny_siglip(out, sizes, seed)


def _recorded_spec(folder: Path) -> dict[str, object] | None:
    try:
        return json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(folder: Path, spec: dict[str, object]) -> bool:
    """True when `folder` holds every file of its asset and a marker recording exactly `spec`."""
    required = REQUIRED_FILES[str(spec["asset"])]
    return _recorded_spec(folder) == spec and all((folder / file).is_file() for file in required)


def _write_atomically(target: Path, spec: dict[str, object], write: Callable[[Path], None]) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the finished folder should read like any other
    try:
        write(staging)
        (staging / MARKER_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def build_tiny_assets(
    out_dir: str | os.PathLike[str], seed: int = 0, force: bool = False, **size_overrides: int | None
) -> dict[str, Path]:
    """Write the tiny offline assets under `out_dir` and return their folders.

    Args:
        out_dir: parent folder; created if missing.
        seed: seed of every random initialisation (same seed and sizes -> identical weights).
        force: rebuild every folder, replacing whatever is there.
        **size_overrides: fields of `TinySizes` (e.g. `hidden_size=128, layers=4`); `None` keeps the default.

    Returns:
        `{"qwen2": Path, "llama": Path, "clip": Path, "chinese_clip": Path, "siglip": Path}`.
    """
    sizes = TinySizes.from_overrides(**size_overrides)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    folders: dict[str, Path] = {}
    for name in tqdm(ASSET_NAMES, desc="tiny assets", disable=None):
        folder = root / name
        folders[name] = folder
        spec = asset_spec(name, sizes, seed)
        if not force and is_complete(folder, spec):
            logger.info("%s is complete; keeping it (pass --force to rebuild)", folder)
            continue
        if not force and folder.exists():
            recorded = _recorded_spec(folder)
            if recorded is None:
                raise FileExistsError(
                    f"{folder} exists but was not written by `python -m llava.tiny build`; "
                    "remove it, choose another --out, or pass --force to replace it."
                )
            logger.warning("%s was built with other settings (%s); rebuilding it", folder, recorded)
        started = time.perf_counter()
        _write_atomically(folder, spec, _writer(name, sizes, seed, spec))
        logger.info("Wrote %s in %.1f s", folder, time.perf_counter() - started)
    return folders
