"""Command-line arguments of `llava/train/train.py`: upstream LLaVA's flags, on transformers 5.

`normalize_argv` translates flags that transformers 5 renamed or removed and degrades GPU-only
settings on CPU-only machines, so the upstream v1.5 shell scripts run unchanged. Upstream flags that
have nothing to do here are grouped in `UpstreamCompatArguments`: accepted, and each one given
logs that it has no effect (`warn_inert_flags`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import torch
import transformers

from llava.model.configuration_llava import LlavaConfig

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(default="facebook/opt-125m", metadata={"help": "LLM (or a saved LLaVA checkpoint)."})
    version: str = field(default="v1", metadata={"help": "Conversation template: plain, v1/vicuna_v1, qwen_2, ..."})
    freeze_backbone: bool = field(default=False, metadata={"help": "Keep the LLM frozen in stage 2."})
    tune_mm_mlp_adapter: bool = field(default=False, metadata={"help": "Stage 1: train only the projector."})
    vision_tower: str | None = field(default=None, metadata={"help": "CLIP/Chinese-CLIP/SigLIP checkpoint (path or hub id)."})
    mm_vision_select_layer: int = field(
        default=LlavaConfig.mm_vision_select_layer, metadata={"help": "Vision layer whose features are used."}
    )
    mm_vision_select_feature: str = field(
        default=LlavaConfig.mm_vision_select_feature, metadata={"help": "patch | cls_patch"}
    )
    pretrain_mm_mlp_adapter: str | None = field(default=None, metadata={"help": "Stage-1 mm_projector.bin."})
    mm_projector_type: str = field(
        default=LlavaConfig.mm_projector_type, metadata={"help": "linear | mlp{N}x_gelu | identity | plugin"}
    )
    mm_use_im_start_end: bool = field(default=LlavaConfig.mm_use_im_start_end)
    mm_use_im_patch_token: bool = field(default=LlavaConfig.mm_use_im_patch_token)
    mm_patch_merge_type: str = field(default="flat", metadata={"help": "Only 'flat' (LLaVA-1.5); others are refused."})
    unfreeze_mm_vision_tower: bool = field(default=False, metadata={"help": "Train the vision tower too."})
    attn_implementation: str | None = field(default=None, metadata={"help": "sdpa | eager | flash_attention_2"})
    use_hub_kernels: bool = field(
        default=False, metadata={"help": "Let transformers swap in kernels downloaded from the Hub (needs network)."}
    )


@dataclass
class DataArguments:
    data_path: str | None = field(
        default=None, metadata={"help": "LLaVA JSON/JSONL (comma-separate several), or a mixture .yaml of sources."}
    )
    image_folder: str | None = field(default=None)
    image_aspect_ratio: str = field(default="square", metadata={"help": "square | pad"})
    strict_data: bool = field(default=False, metadata={"help": "Fail on the first bad data item."})


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    cache_dir: str | None = field(default=None)
    optim: str = field(default="adamw_torch")
    remove_unused_columns: bool = field(default=False)
    freeze_mm_mlp_adapter: bool = field(default=False)
    model_max_length: int = field(default=512, metadata={"help": "Max sequence length, image tokens included."})
    double_quant: bool = field(default=True, metadata={"help": "--bits 4 only: quantize the quantization constants."})
    quant_type: str = field(default="nf4", metadata={"help": "--bits 4 only: nf4 | fp4"})
    bits: int = field(default=16, metadata={"help": "4 | 8 need CUDA + bitsandbytes; 16 = no quantisation."})
    lora_enable: bool = False
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_bias: str = "none"
    mm_projector_lr: float | None = None
    mm_vision_tower_lr: float | None = None
    group_by_modality_length: bool = field(default=False)
    packing: bool = field(
        default=False,
        metadata={
            "help": "Pack whole samples into rows of --model_max_length tokens (per_device_train_batch_size "
            "then counts rows); attention and positions stay per sample."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an --output_dir that holds a finished run: start over there (its checkpoints "
                  "are removed). Without it such a folder is refused (llava.train.output_guard)."},
    )
    auto_resume: bool = field(
        default=True,
        metadata={"help": "Resume from the newest complete checkpoint-* in --output_dir when there is one."},
    )
    resume_verification: str = field(
        default="sha256",
        metadata={
            "help": "How the checkpoint to resume from is checked against its marker: sha256 (every byte) or size "
            "(sizes and headers, seconds at any size).",
            "choices": ["sha256", "size"],
        },
    )
    max_bad_steps: int = field(
        default=3,
        metadata={"help": "Stop at this many bad steps (NaN/inf loss or gradient norm) in a row; fewer are skipped. "
                  "1 stops at the first."},
    )
    preemption_signals: str = field(
        default="SIGTERM,SIGUSR1",
        metadata={"help": "Signals that end the run after the current step with a checkpoint and exit status 75 "
                  "(comma-separated, or none)."},
    )


@dataclass
class UpstreamCompatArguments:
    """Upstream LLaVA flags accepted only so its shell scripts run unchanged; none has an effect here.
    Each field's help says why."""

    lazy_preprocess: bool = field(default=True, metadata={"help": "No effect: data is always read lazily."})
    mpt_attn_impl: str | None = field(
        default="triton", metadata={"help": "No effect: MPT backbones get no special attention here."}
    )
    lora_weight_path: str = field(default="", metadata={"help": "No effect: upstream never read it either."})


# Flags that only matter together with another setting: (flag, when it matters, the setting's test).
CONDITIONAL_FLAGS = (
    ("--double_quant", "--bits 4", lambda training_args: training_args.bits == 4),
    ("--quant_type", "--bits 4", lambda training_args: training_args.bits == 4),
)


def _given(argv: list[str], flag: str) -> bool:
    return any(token == flag or token.startswith(flag + "=") for token in argv)


def warn_inert_flags(argv: list[str], training_args) -> list[str]:
    """Log one line for each flag in `argv` that has no effect in this run; returns those flags."""
    inert = []
    for compat in dataclasses.fields(UpstreamCompatArguments):
        flag = f"--{compat.name}"
        if _given(argv, flag):
            logger.warning("%s has no effect here (%s); accepted so upstream LLaVA scripts run", flag, compat.metadata["help"])
            inert.append(flag)
    for flag, needs, matters in CONDITIONAL_FLAGS:
        if _given(argv, flag) and not matters(training_args):
            logger.warning("%s has no effect without %s", flag, needs)
            inert.append(flag)
    return inert


RENAMED_FLAGS = {
    "--evaluation_strategy": "--eval_strategy",  # renamed in transformers 5
    "--warmup_ratio": "--warmup_steps",  # transformers 5: a float in [0, 1) is a ratio
}
GPU_ONLY_FLAGS = ("--tf32", "--bf16", "--fp16")


def _split_flag(token: str) -> tuple[str, str | None]:
    return tuple(token.split("=", 1)) if "=" in token else (token, None)  # type: ignore[return-value]


def flag_value(argv: list[str], flag: str, default: str | None = None) -> str | None:
    """The value given to `flag` in `argv` (`--flag value` or `--flag=value`), else `default`. A flag
    given twice counts with its last value, as argparse does."""
    value = default
    for i, token in enumerate(argv):
        if token == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif token.startswith(flag + "="):
            value = token.split("=", 1)[1]
    return value


def normalize_argv(argv: list[str], cuda_available: bool | None = None) -> list[str]:
    """Rename flags transformers 5 dropped; on a machine without CUDA drop `--bf16/--fp16/--tf32 True`
    and add `--use_cpu True`.

    GPU-only settings degrade with a single warning and the run continues on the CPU. `--use_cpu`
    makes a `torchrun`/`deepspeed` launch on CPUs one gloo process group rather than N unrelated
    single-process runs (accelerate only sets up a CPU process group when asked to).
    """
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    out: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(argv):
        flag, inline = _split_flag(argv[i])
        takes_next = inline is None and i + 1 < len(argv) and not argv[i + 1].startswith("--")
        value = inline if inline is not None else (argv[i + 1] if takes_next else None)
        width = 2 if takes_next else 1
        if flag in RENAMED_FLAGS:
            flag = RENAMED_FLAGS[flag]
        if flag in GPU_ONLY_FLAGS and not cuda_available:
            if value is None or value.lower() in ("true", "1", "yes"):
                dropped.append(flag)
            i += width
            continue
        out.append(flag if inline is None else f"{flag}={inline}")
        if takes_next:
            out.append(argv[i + 1])
        i += width
    if dropped:
        logger.warning("no CUDA device: ignoring %s and training in float32 on the CPU", " ".join(dropped))
    if not cuda_available and flag_value(out, "--use_cpu") is None and "--use_cpu" not in out:
        out += ["--use_cpu", "True"]
    return out
