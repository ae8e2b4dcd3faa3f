"""Assemble an (untrained) tiny LLaVA from the tiny assets, the way training assembles one."""

from __future__ import annotations

from pathlib import Path

import torch


def build_tiny_llava(assets: dict[str, Path], llm: str = "qwen2", vision: str = "clip", **config_overrides):
    """(model, tokenizer, image_processor): `assets[llm]` as the LLM, `assets[vision]` as the tower.

    `config_overrides` go into `LlavaConfig` (e.g. `mm_projector_type="parrot_moe"`, `moe_num_experts=4`).
    """
    from transformers import AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer

    from llava.model import LlavaForCausalLM
    from llava.model.hub_kernels import hub_kernel_kwargs

    torch.manual_seed(0)
    language_model = AutoModelForCausalLM.from_pretrained(assets[llm], dtype=torch.float32, **hub_kernel_kwargs())
    model = LlavaForCausalLM.from_components(
        language_model,
        str(assets[vision]),
        mm_projector_type=config_overrides.pop("mm_projector_type", "mlp2x_gelu"),
        mm_vision_select_layer=config_overrides.pop("mm_vision_select_layer", -2),
        conv_template=config_overrides.pop("conv_template", "qwen_2" if llm == "qwen2" else "chatml"),
        **config_overrides,
    )
    tokenizer = AutoTokenizer.from_pretrained(assets[llm])
    return model.eval(), tokenizer, AutoImageProcessor.from_pretrained(assets[vision])


def save_tiny_llava(assets: dict[str, Path], out: str | Path, **kwargs) -> Path:
    """Build with `build_tiny_llava` and save weights, tokenizer and image processor to `out`."""
    out = Path(out)
    model, tokenizer, image_processor = build_tiny_llava(assets, **kwargs)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    return out
