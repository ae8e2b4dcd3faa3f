"""Build the model, tokenizer and image processor for a training run, and set what trains.

Decisions come from saved configs (`model_type`), never from folder names. Paths are checked
before anything is loaded so a typo fails in a second, naming the flag.
"""

from __future__ import annotations

import logging
import os
import re

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer
from transformers.integrations import is_deepspeed_zero3_enabled

from llava.constants import (
    DEFAULT_IM_END_TOKEN,
    DEFAULT_IM_START_TOKEN,
    DEFAULT_IMAGE_PATCH_TOKEN,
)
from llava.data.mixture import is_mixture, parse_mixture
from llava.model import LlavaConfig, LlavaForCausalLM
from llava.model.hub_kernels import hub_kernel_kwargs
from llava.model.projector_io import load_projector_weights
from llava.model.zero3 import full_shape
from llava.optional import require_deepspeed

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def check_path(flag: str, value: str | None, *, hub_ok: bool) -> None:
    """Fail fast, naming the flag, when a local path does not exist (hub ids pass when allowed)."""
    if value is None:
        return
    for part in [p.strip() for p in value.split(",")] if flag == "--data_path" else [value]:
        if os.path.exists(part):
            continue
        if hub_ok and _HUB_ID.match(part) and not part.startswith("."):
            logger.info("%s %s is not a local path; treating it as a Hugging Face hub id", flag, part)
            continue
        raise FileNotFoundError(f"{flag} {part}: no such file or directory; fix the path in your launch command")


def check_paths(model_args, data_args) -> None:
    check_path("--model_name_or_path", model_args.model_name_or_path, hub_ok=True)
    check_path("--vision_tower", model_args.vision_tower, hub_ok=True)
    check_path("--pretrain_mm_mlp_adapter", model_args.pretrain_mm_mlp_adapter, hub_ok=False)
    check_path("--data_path", data_args.data_path, hub_ok=False)
    check_path("--image_folder", data_args.image_folder, hub_ok=False)
    if data_args.data_path is None:
        raise ValueError("--data_path is required")
    if is_mixture(data_args.data_path):
        parse_mixture(data_args.data_path)  # every entry's files, before any model is loaded


def load_tokenizer(model_args, training_args):
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        cache_dir=training_args.cache_dir,
        model_max_length=training_args.model_max_length,
        padding_side="right",
    )
    if tokenizer.pad_token is None:
        # LLaVA's choice for LLaMA tokenizers: pad with unk, else eos (labels mask padding anyway).
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def _projector_extras(model_args, projector_args) -> dict:
    extras = {name: value for args in projector_args or () for name, value in vars(args).items()}
    extras["mm_patch_merge_type"] = model_args.mm_patch_merge_type
    return extras


def _ensure_deepspeed_comm() -> None:
    """ZeRO-3 partitions parameters while the model is built, through `deepspeed.comm`. accelerate
    sets that up on GPUs, but on CPUs (`--use_cpu`, gloo) it only creates the torch process group,
    and DeepSpeed would then see a world of one; wrap the existing group."""
    deepspeed = require_deepspeed()
    if not deepspeed.comm.is_initialized():
        deepspeed.init_distributed(dist_backend="gloo")


def _quantization_kwargs(training_args) -> dict:
    """`from_pretrained` arguments for `--bits 4|8` (QLoRA); empty for 16. Preflight has checked that
    CUDA and bitsandbytes are present."""
    if training_args.bits not in (4, 8):
        return {}
    from transformers import BitsAndBytesConfig

    compute_dtype = torch.bfloat16 if training_args.bf16 else torch.float16 if training_args.fp16 else torch.float32
    quantization = BitsAndBytesConfig(
        load_in_4bit=training_args.bits == 4,
        load_in_8bit=training_args.bits == 8,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_use_double_quant=training_args.double_quant,
        bnb_4bit_quant_type=training_args.quant_type,
    )
    return {"quantization_config": quantization, "device_map": {"": training_args.device}}


def build_model(model_args, data_args, training_args, projector_args=None, dtype=torch.float32):
    """Return (model, tokenizer, image_processor) ready for freezing and training.

    Under ZeRO-3 every parameter is partitioned from the start; the vision tower's pretrained
    weights and a stage-1 projector (`--pretrain_mm_mlp_adapter`) are loaded by gathering.
    """
    if is_deepspeed_zero3_enabled():
        _ensure_deepspeed_comm()
    tokenizer = load_tokenizer(model_args, training_args)
    attn = model_args.attn_implementation
    kernels = hub_kernel_kwargs(model_args.use_hub_kernels)
    source_config = AutoConfig.from_pretrained(model_args.model_name_or_path, cache_dir=training_args.cache_dir)
    if source_config.model_type == LlavaConfig.model_type:
        # Continue from a saved multimodal checkpoint: everything comes from its config.
        model = LlavaForCausalLM.from_pretrained(
            model_args.model_name_or_path, dtype=dtype, attn_implementation=attn, **kernels
        )
        image_processor = AutoImageProcessor.from_pretrained(model_args.model_name_or_path) if model.config.has_vision else None
    else:
        llm = AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path,
            cache_dir=training_args.cache_dir,
            dtype=dtype,
            attn_implementation=attn,
            **kernels,
            **_quantization_kwargs(training_args),
        )
        model = LlavaForCausalLM.from_components(
            llm,
            model_args.vision_tower,
            dtype=dtype,
            mm_projector_type=model_args.mm_projector_type,
            mm_vision_select_layer=model_args.mm_vision_select_layer,
            mm_vision_select_feature=model_args.mm_vision_select_feature,
            mm_use_im_start_end=model_args.mm_use_im_start_end,
            mm_use_im_patch_token=model_args.mm_use_im_patch_token,
            image_aspect_ratio=data_args.image_aspect_ratio,
            **_projector_extras(model_args, projector_args),
        )
        image_processor = None
        if model_args.vision_tower:
            image_processor = AutoImageProcessor.from_pretrained(model_args.vision_tower)
    config = model.config
    config.conv_template = model_args.version if model_args.version != "plain" else config.conv_template
    config.tokenizer_model_max_length = training_args.model_max_length
    config.tokenizer_padding_side = tokenizer.padding_side
    config.image_aspect_ratio = data_args.image_aspect_ratio
    config.tune_mm_mlp_adapter = model_args.tune_mm_mlp_adapter
    config.use_cache = False
    model.language_model.config.use_cache = False
    if model_args.pretrain_mm_mlp_adapter:
        load_projector_weights(model.mm_projector, model_args.pretrain_mm_mlp_adapter)
    _add_image_tokens(model, tokenizer, model_args)
    return model, tokenizer, image_processor


def _add_image_tokens(model, tokenizer, model_args) -> None:
    """Upstream `--mm_use_im_patch_token` / `--mm_use_im_start_end`: add the tokens, grow the embeddings."""
    new_tokens = []
    if model_args.mm_use_im_patch_token and model.config.has_vision:
        new_tokens.append(DEFAULT_IMAGE_PATCH_TOKEN)
    if model_args.mm_use_im_start_end:
        new_tokens += [DEFAULT_IM_START_TOKEN, DEFAULT_IM_END_TOKEN]
    added = tokenizer.add_tokens(new_tokens, special_tokens=True) if new_tokens else 0
    if added and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.language_model.resize_token_embeddings(len(tokenizer))
        model.config.text_config.vocab_size = model.language_model.config.vocab_size


def configure_trainable(model: LlavaForCausalLM, model_args, training_args) -> None:
    """Stage 1 (`--tune_mm_mlp_adapter`): only the projector trains. Stage 2: projector + LLM.

    The vision tower trains only with `--unfreeze_mm_vision_tower`. The projector refines this in
    its `set_training_stage(stage, config)` hook (a plugin's MoE freezes itself in stage 1).
    """
    stage = 1 if model_args.tune_mm_mlp_adapter else 2
    model.requires_grad_(False)
    if stage == 2 and not model_args.freeze_backbone:
        model.language_model.requires_grad_(True)
    if model.mm_projector is not None:
        model.mm_projector.requires_grad_(not training_args.freeze_mm_mlp_adapter)
        model.mm_projector.set_training_stage(stage, model.config)
    if model.vision_tower is not None and model_args.unfreeze_mm_vision_tower:
        model.vision_tower.encoder.requires_grad_(True)
    trainable = sum(full_shape(p).numel() for p in model.parameters() if p.requires_grad)
    total = sum(full_shape(p).numel() for p in model.parameters())
    logger.info("stage %d: %s / %s parameters trainable", stage, f"{trainable:,}", f"{total:,}")
