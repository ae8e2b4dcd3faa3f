"""Guarded imports of optional heavy dependencies: one place, one actionable message each."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from types import ModuleType

import torch

logger = logging.getLogger(__name__)

_EXTRAS = {
    "deepspeed": ("deepspeed", "train", "DS_BUILD_OPS=0 pip install -e '.[train]'"),
    "peft": ("peft", "train", "pip install -e '.[train]'"),
    "wandb": ("wandb", "train", "pip install -e '.[train]' (offline runs: WANDB_MODE=offline)"),
    "gradio": ("gradio", "serve", "pip install -e '.[serve]'"),
    "prometheus_client": ("prometheus-client", "serve", "pip install -e '.[serve]'"),
    "fastapi": ("fastapi", "serve", "pip install -e '.[serve]'"),
    "uvicorn": ("uvicorn", "serve", "pip install -e '.[serve]'"),
    "flash_attn": ("flash-attn", "gpu", "pip install -e '.[gpu]' (needs CUDA)"),
    "bitsandbytes": ("bitsandbytes", "gpu", "pip install -e '.[gpu]' (needs CUDA)"),
    "openai": ("openai", "translate", "pip install -e '.[translate]'"),
    "lingua": ("lingua-language-detector", "translate", "pip install -e '.[translate]'"),
}


def require(module: str) -> ModuleType:
    """Import an optional dependency or raise ImportError saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package, extra, command = _EXTRAS[module]
        raise ImportError(f"{package} is required for this feature (extra '{extra}'): {command}") from err


def require_extra(extra: str, command_line: str | None = None) -> None:
    """Check that every module of `extra` (see `_EXTRAS`) is importable, before a module that needs
    them is imported. Missing ones raise ImportError naming the install command; with `command_line`
    (an entry point run as `__main__`) the process exits with status 1 and that message instead of
    a traceback."""
    missing = [m for m, (_, of, _) in _EXTRAS.items() if of == extra and importlib.util.find_spec(m) is None]
    if not missing:
        return
    command = _EXTRAS[missing[0]][2]
    names = ", ".join(_EXTRAS[m][0] for m in missing)
    message = f"{command_line or 'this feature'} needs the '{extra}' extra ({names} missing): {command}"
    if command_line:
        raise SystemExit(f"error: {message}")
    raise ImportError(message)


def require_deepspeed() -> ModuleType:
    return require("deepspeed")


def require_wandb() -> ModuleType:
    import os

    if not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
        logger.info("no WANDB_API_KEY: logging to wandb offline (sync later with `wandb sync`)")
    return require("wandb")


def require_gradio() -> ModuleType:
    return require("gradio")


def require_peft() -> ModuleType:
    return require("peft")


_warned_flash = False


def flash_attention_available() -> bool:
    """True when flash-attn is importable and CUDA is present; otherwise warns once."""
    global _warned_flash
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return True
    if not _warned_flash:
        reason = "no CUDA device" if not torch.cuda.is_available() else "flash-attn is not installed"
        logger.warning("FlashAttention-2 unavailable (%s): using PyTorch SDPA attention", reason)
        _warned_flash = True
    return False
