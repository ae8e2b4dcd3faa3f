"""`load_pretrained_model`: upstream LLaVA's signature; every decision comes from saved configs.

Upstream chose the model class and LoRA handling from substrings of the folder name; here the
checkpoint's `config.json` (`model_type`) and the files present decide:
- a `parrot_llava` checkpoint loads whole;
- an adapter checkpoint (`adapter_config.json`, LoRA) is rebuilt from its own `config.json` on top of
  `model_base` (the LLM it was trained on, or a whole `parrot_llava` checkpoint), with its
  `non_lora_trainables.safetensors` (projector, MoE, resized embeddings), then merged;
- a projector-only stage-1 output (`mm_projector.bin`) is combined with the LLM in `model_base`.
`model_name` is accepted for compatibility and only used for display.
"""

from __future__ import annotations

import logging
import os

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer

from llava.constants import MM_PROJECTOR_FILE
from llava.model import LlavaConfig, LlavaForCausalLM
from llava.model.projector_io import load_projector_weights

logger = logging.getLogger(__name__)

# Written by LoRA training beside the adapter: every trained tensor that is not a LoRA weight.
NON_LORA_TRAINABLES_FILE = "non_lora_trainables.safetensors"


def default_dtype(device: str | torch.device) -> torch.dtype:
    """The dtype a model runs in when none is asked for: bfloat16 on a CUDA device that supports it
    (Qwen and LLaMA train in bf16), float16 on older CUDA devices, float32 on the CPU."""
    if not str(device).startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _assemble_on_llm(model_path: str, model_base: str, dtype: torch.dtype) -> LlavaForCausalLM:
    """The model described by `model_path/config.json`, with the LLM weights of `model_base` and the
    vision tower's pretrained weights."""
    llm = AutoModelForCausalLM.from_pretrained(model_base, dtype=dtype)
    return LlavaForCausalLM.from_components(llm, config=LlavaConfig.from_pretrained(model_path))


def _load_stage1(model_path: str, model_base: str, dtype: torch.dtype):
    model = _assemble_on_llm(model_path, model_base, dtype)
    load_projector_weights(model.mm_projector, os.path.join(model_path, MM_PROJECTOR_FILE))
    return model.to(dtype), AutoTokenizer.from_pretrained(model_base)


def load_non_lora_trainables(model: LlavaForCausalLM, path: str) -> None:
    """Load `non_lora_trainables.safetensors` (keys relative to the model); every key must exist."""
    from safetensors.torch import load_file

    state = load_file(path)
    # The file holds only what LoRA training changed besides the adapter: "missing" keys are expected.
    _, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{path}: tensors {unexpected[:5]} do not exist in the model built from its config.json")
    logger.info("loaded %d non-LoRA tensors from %s", len(state), path)


def _load_adapter(model_path: str, model_base: str, dtype: torch.dtype, merge: bool = True):
    from llava.optional import require_peft

    peft = require_peft()
    if AutoConfig.from_pretrained(model_base).model_type == LlavaConfig.model_type:
        base = LlavaForCausalLM.from_pretrained(model_base, dtype=dtype)
    else:
        base = _assemble_on_llm(model_path, model_base, dtype)
    non_lora = os.path.join(model_path, NON_LORA_TRAINABLES_FILE)
    if os.path.isfile(non_lora):
        load_non_lora_trainables(base, non_lora)
    model = peft.PeftModel.from_pretrained(base, model_path)
    if merge:
        model = model.merge_and_unload()
    return model, AutoTokenizer.from_pretrained(model_path)


def load_pretrained_model(
    model_path: str,
    model_base: str | None = None,
    model_name: str | None = None,
    load_8bit: bool = False,
    load_4bit: bool = False,
    device_map: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = None,
    merge_lora: bool = True,
    **kwargs,
):
    """Returns (tokenizer, model, image_processor, context_len), like upstream LLaVA.

    A LoRA adapter folder is merged into its base (`merge_lora=False` keeps the peft model, for
    comparisons and further training)."""
    if not os.path.isdir(model_path):
        raise FileNotFoundError(f"--model-path {model_path}: not a directory with a saved checkpoint")
    if load_8bit or load_4bit:
        from llava.optional import require

        require("bitsandbytes")
        if not torch.cuda.is_available():
            raise RuntimeError("--load-8bit/--load-4bit need a CUDA device")
    dtype = dtype or default_dtype(device)
    files = set(os.listdir(model_path))
    if "adapter_config.json" in files:
        if model_base is None:
            raise ValueError(f"{model_path} holds a LoRA adapter: pass --model-base with the model it was trained on")
        model, tokenizer = _load_adapter(model_path, model_base, dtype, merge=merge_lora)
    elif AutoConfig.from_pretrained(model_path).model_type != LlavaConfig.model_type:
        raise ValueError(
            f"{model_path}: config.json has model_type {AutoConfig.from_pretrained(model_path).model_type!r}, "
            f"not a {LlavaConfig.model_type!r} checkpoint; train one with llava/train/train.py"
        )
    elif MM_PROJECTOR_FILE in files and not any(f.endswith(".safetensors") for f in files):
        if model_base is None:
            raise ValueError(f"{model_path} holds only a stage-1 projector: pass --model-base with its LLM")
        model, tokenizer = _load_stage1(model_path, model_base, dtype)
    else:
        model = LlavaForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation=attn_implementation)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    model.to(device).eval()
    model.config.use_cache = True
    model.language_model.config.use_cache = True
    image_processor = None
    if model.config.has_vision:
        source = model_path if "preprocessor_config.json" in files else model.config.mm_vision_tower
        image_processor = AutoImageProcessor.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    context_len = model.config.tokenizer_model_max_length or getattr(
        model.config.text_config, "max_position_embeddings", 2048
    )
    logger.info("loaded %s (%s) on %s", model_name or os.path.basename(os.path.normpath(model_path)), dtype, device)
    return tokenizer, model, image_processor, context_len
