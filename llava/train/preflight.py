"""Checks that run before anything heavy is loaded, so a launch that cannot work stops in seconds
with a message that names the flag and the fix (the CLI prints it without a traceback)."""

from __future__ import annotations

import os

import torch
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from llava.optional import require, require_deepspeed, require_peft

QUANTIZED_BITS = (4, 8)
SUPPORTED_BITS = (4, 8, 16)
QUANT_TYPES = ("nf4", "fp4")
# Flags whose other values upstream LLaVA (or LLaVA-NeXT) knows, but which are not implemented here.
SUPPORTED_VALUES = {
    "mm_patch_merge_type": ("flat",),
    "image_aspect_ratio": ("square", "pad"),
    "mm_vision_select_feature": ("patch", "cls_patch"),
}


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


def check_model_args(model_args, data_args) -> None:
    """Refuse values this codebase does not implement rather than training as if they were another."""
    given = {
        "mm_patch_merge_type": model_args.mm_patch_merge_type,
        "image_aspect_ratio": data_args.image_aspect_ratio,
        "mm_vision_select_feature": model_args.mm_vision_select_feature,
    }
    for name, value in given.items():
        supported = SUPPORTED_VALUES[name]
        if value not in supported:
            raise LaunchError(f"--{name} {value} is not supported here; use {' or '.join(supported)}")


def check_training_args(training_args) -> None:
    """LoRA needs peft; `--bits 4|8` (QLoRA) needs CUDA, bitsandbytes and `--lora_enable`; `--packing`
    takes whole rows, which HF's per-sample length samplers cannot order; `--max_bad_steps` is at
    least 1."""
    if training_args.packing and training_args.train_sampling_strategy not in ("random", "sequential"):
        raise LaunchError(
            f"--packing True with --train_sampling_strategy {training_args.train_sampling_strategy}: packed rows are "
            "already filled by length; use --train_sampling_strategy random (default) or sequential"
        )
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
    if bits == 4 and training_args.quant_type not in QUANT_TYPES:
        raise LaunchError(f"--quant_type {training_args.quant_type} is not a bitsandbytes 4-bit type; use nf4 or fp4")
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


def check_packing_attention(model) -> None:
    """`--packing` keeps samples apart through transformers' masking from position ids, which exists
    for sdpa, eager, flex and flash attention only."""
    implementation = model.language_model.config._attn_implementation
    if implementation not in ALL_MASK_ATTENTION_FUNCTIONS:
        raise LaunchError(
            f"--packing True: the LLM uses attention '{implementation}', for which transformers cannot keep packed "
            "samples apart; use --attn_implementation sdpa (or flash_attention_2 on CUDA), or drop --packing"
        )
