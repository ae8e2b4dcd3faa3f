"""Checks that run before anything heavy is loaded, so a launch that cannot work stops in seconds
with a message that names the flag and the fix (the CLI prints it without a traceback)."""

from __future__ import annotations

import os

import torch

from llava.optional import require, require_deepspeed, require_peft

QUANTIZED_BITS = (4, 8)
SUPPORTED_BITS = (4, 8, 16)


class LaunchError(ValueError):
    """A setup problem the user must fix before launching (missing dependency, bad flag combination)."""


def check_argv(argv: list[str]) -> None:
    """Checks that must run before argument parsing: transformers itself imports deepspeed while
    parsing `--deepspeed`, and would fail there with a traceback."""
    # imported here, so that `python -m llava.train.checkpoints verify` starts without transformers
    from llava.train.arguments import flag_value

    config = flag_value(argv, "--deepspeed")
    if config is None:
        return
    try:
        require_deepspeed()
    except ImportError as err:
        raise LaunchError(f"--deepspeed {config}: {err}; or drop --deepspeed to train without ZeRO") from err
    if not config.lstrip().startswith("{") and not os.path.isfile(config):
        raise LaunchError(
            f"--deepspeed {config}: no such file; the shipped configs are scripts/zero2.json, scripts/zero3.json "
            "and scripts/zero3_offload.json"
        )


def check_training_args(training_args) -> None:
    """LoRA needs peft; `--bits 4|8` (QLoRA) needs CUDA, bitsandbytes and `--lora_enable`;
    `--max_bad_steps` is at least 1."""
    if training_args.max_bad_steps < 1:
        raise LaunchError(
            f"--max_bad_steps {training_args.max_bad_steps}: must be at least 1 (1 stops at the first step whose loss "
            "or gradient norm is not finite; N skips up to N-1 such steps in a row)"
        )
    bits = training_args.bits
    if bits not in SUPPORTED_BITS:
        raise LaunchError(f"--bits {bits} is not supported: use 4 or 8 (QLoRA, needs CUDA) or 16 (no quantisation)")
    if training_args.lora_enable:
        try:
            require_peft()
        except ImportError as err:
            raise LaunchError(f"--lora_enable: {err}") from err
    if bits not in QUANTIZED_BITS:
        return
    problems = []
    if not torch.cuda.is_available():
        problems.append("no CUDA device is visible")
    try:
        require("bitsandbytes")
    except ImportError as err:
        problems.append(str(err))
    if problems:
        raise LaunchError(
            f"--bits {bits} quantises the LLM with bitsandbytes, which needs a CUDA GPU and the bitsandbytes "
            f"package: {'; '.join(problems)}. Run on a CUDA machine, or drop --bits (default 16) to train "
            "without quantisation."
        )
    if not training_args.lora_enable:
        raise LaunchError(f"--bits {bits}: quantised weights cannot be trained directly; add --lora_enable True")
