"""LoRA (`--lora_enable`): adapters on the LLM's linear layers; the projector stays fully trainable.

Only `nn.Linear` layers inside `language_model` get adapters (its output head excluded): never the
vision tower, never the projector. Whatever else trains (the projector, a plugin's MoE, an unfrozen
vision tower) keeps training in full and is saved beside the adapter in
`non_lora_trainables.safetensors`, together with the token embeddings when new tokens grew them,
so `load_pretrained_model(adapter_dir, model_base=LLM)` rebuilds exactly the trained model.
"""

from __future__ import annotations

import logging
import os
import re

import torch
import torch.nn as nn
from safetensors.torch import save_file
from transformers import AutoConfig

from llava.model.builder import NON_LORA_TRAINABLES_FILE
from llava.model.zero3 import full_shape, gathered
from llava.optional import require_peft
from llava.train.save_layout import LORA_PARAMETER_MARKER

logger = logging.getLogger(__name__)


def lora_target_modules(model: nn.Module) -> str:
    """A regex (peft matches it against full module names) for every linear layer of the LLM
    except its output head, e.g. `language_model\\..*\\.(down_proj|gate_proj|...)`."""
    llm = model.language_model
    head = llm.get_output_embeddings()
    leaf_names = {
        name.rsplit(".", 1)[-1]
        for name, module in llm.named_modules()
        if isinstance(module, nn.Linear) and module is not head
    }
    if not leaf_names:
        raise ValueError("--lora_enable: the language model has no nn.Linear layers to adapt")
    return rf"language_model\..*\.({'|'.join(sorted(re.escape(n) for n in leaf_names))})"


def apply_lora(model: nn.Module, training_args) -> nn.Module:
    """Wrap `model` in a peft `PeftModel`; parameters outside the LLM that were trainable stay so.

    Call after the stage freezing (`configure_trainable`): peft freezes everything it does not adapt,
    so the trainable non-LLM parameters are re-enabled here.
    """
    peft = require_peft()
    keep_training = [
        name for name, p in model.named_parameters() if p.requires_grad and not name.startswith("language_model.")
    ]
    config = peft.LoraConfig(
        r=training_args.lora_r,
        lora_alpha=training_args.lora_alpha,
        lora_dropout=training_args.lora_dropout,
        bias=training_args.lora_bias,
        target_modules=lora_target_modules(model),
    )
    if training_args.bits in (4, 8):
        model.language_model = peft.prepare_model_for_kbit_training(
            model.language_model, use_gradient_checkpointing=training_args.gradient_checkpointing
        )
    peft_model = peft.get_peft_model(model, config)
    params = dict(model.named_parameters())
    for name in keep_training:
        params[name].requires_grad_(True)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    logger.info(
        "LoRA r=%d alpha=%d on the LLM's linear layers; %s parameters trainable (adapters + %d non-LLM tensors)",
        training_args.lora_r,
        training_args.lora_alpha,
        f"{trainable:,}",
        len(keep_training),
    )
    return peft_model


def _embeddings_were_resized(model: nn.Module) -> bool:
    """True when new tokens grew the LLM's vocabulary beyond its base checkpoint's."""
    source = getattr(model.language_model.config, "_name_or_path", "")
    if not source:
        return False
    base_vocab = AutoConfig.from_pretrained(source).vocab_size
    return full_shape(model.get_input_embeddings().weight)[0] != base_vocab


def non_lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters (names relative to `LlavaForCausalLM`) saved beside the adapter: trainable
    non-LoRA ones, plus the input/output embeddings when the vocabulary was resized."""
    base = model.get_base_model()
    selected = {
        name: p for name, p in base.named_parameters() if p.requires_grad and LORA_PARAMETER_MARKER not in name
    }
    if _embeddings_were_resized(base):
        for module in (base.get_input_embeddings(), base.get_output_embeddings()):
            if module is None:
                continue
            for name, p in base.named_parameters():
                if p is module.weight:
                    selected[name] = p
    return selected


def non_lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of `non_lora_parameters`, gathered under ZeRO-3 (every rank must call this)."""
    params = non_lora_parameters(model)
    with gathered(params.values()):
        return {name: p.detach().cpu().clone().contiguous() for name, p in params.items()}


def save_non_lora_trainables(model: nn.Module, output_dir: str, is_main_process: bool) -> str:
    """Write `non_lora_trainables.safetensors`; every rank must call this (ZeRO-3 gathers)."""
    state = non_lora_state_dict(model)
    path = os.path.join(output_dir, NON_LORA_TRAINABLES_FILE)
    if is_main_process:
        os.makedirs(output_dir, exist_ok=True)
        save_file(state, path, metadata={"format": "pt"})
        logger.info("saved %d non-LoRA tensors to %s", len(state), path)
    return path
