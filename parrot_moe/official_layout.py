"""The layout of AIDC-AI's released Parrot checkpoints (`Parrot-7B`, `Parrot-14B`), and how it maps onto ours.

Facts read from AIDC-AI/Parrot (`parrot/model/language_model/parrot_qwen2.py`, `parrot_arch.py`,
`moe_model/moe.py`):

- `config.json` has `model_type: parrot_qwen2`: a Qwen2 config plus LLaVA's `mm_*` fields and the MoE's
  `num_experts`, `moe_hidden_size` (= the LLM width), `moe_intermediate_size`, `moe_top_k` (never read
  by their forward: all experts run), `moe_weight` (the residual weight), `use_moe` (False bypasses
  the MoE) and `use_moe_residual` (False drops the residual).
- Tensors: the Qwen2 LLM at `model.embed_tokens`, `model.layers.*`, `model.norm`, `lm_head`; the
  projector at `model.mm_projector.{0,2}`; the CLIP tower at `model.vision_tower.vision_tower.vision_model.*`;
  the router at `model.moe_model.gate.weight` (no bias); expert i at
  `model.moe_model.experts.{i}.{gate_proj,up_proj,down_proj}.weight` (SwiGLU, no bias).
- Their computation, per sample: H = mlp2x_gelu(CLIP features incl. CLS) (`cls_patch`, asserted),
  query = H[0], text = word embeddings of every non-answer prompt token,
  G = sum_i P_i E_i(H) + moe_weight * H, all 1+N rows of G go to the LLM.

Ours reproduces that with `--mm_projector_type parrot_moe --moe_expert_type swiglu
--moe_residual_mode official --moe_alpha <moe_weight> --mm_vision_select_feature cls_patch`, dense
routing (no `--moe_top_k`) and no auxiliary loss.
"""

from __future__ import annotations

import logging
import re

import torch

from llava.model.convert.base import ConversionError

logger = logging.getLogger(__name__)

MODEL_TYPE = "parrot_qwen2"
_NOT_QWEN2 = {
    "num_experts", "use_moe", "use_moe_residual", "use_mm_proj", "image_aspect_ratio", "image_grid_pinpoints",
    "tune_mm_mlp_adapter", "freeze_mm_mlp_adapter", "unfreeze_mm_vision_tower", "model_type", "architectures",
    "_name_or_path",
}
_EXPERT_KEY = re.compile(r"^model\.moe_model\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
VISION_PREFIX = "model.vision_tower.vision_tower."
PROJECTOR_PREFIX = "model.mm_projector."
MOE_PREFIX = "model.moe_model."


def qwen2_fields(raw: dict) -> dict:
    """The Qwen2 part of a Parrot config.json (everything that is not multimodal or MoE)."""
    return {
        key: value for key, value in raw.items()
        if key not in _NOT_QWEN2 and not key.startswith(("mm_", "moe_", "tokenizer_"))
    }


def uses_moe(raw: dict) -> bool:
    """Whether their forward runs the MoE: it exists (`moe_hidden_size`) and is not switched off."""
    return "moe_hidden_size" in raw and bool(raw.get("use_moe", True))


def our_settings(raw: dict, source: object) -> dict:
    """Our `LlavaConfig` fields (`mm_*`, `moe_*`, template) for a Parrot config.json, or ConversionError."""
    merge = raw.get("mm_patch_merge_type", "flat")
    if merge != "flat":
        raise ConversionError(f"{source}: mm_patch_merge_type {merge!r} is not supported here (only 'flat', LLaVA-1.5's)")
    projector = raw.get("mm_projector_type", "linear")
    settings = {
        "mm_vision_select_layer": raw.get("mm_vision_select_layer", -1),
        "mm_vision_select_feature": raw.get("mm_vision_select_feature", "patch"),
        "mm_use_im_start_end": bool(raw.get("mm_use_im_start_end", False)),
        "mm_use_im_patch_token": bool(raw.get("mm_use_im_patch_token", False)),
        "image_aspect_ratio": raw.get("image_aspect_ratio") or "square",
        "tokenizer_model_max_length": raw.get("tokenizer_model_max_length"),
        "tokenizer_padding_side": raw.get("tokenizer_padding_side", "right"),
        "conv_template": "qwen_2",
    }
    if not uses_moe(raw):
        logger.warning("%s: use_moe is false, so their forward skips the MoE; converting to plain %s", source, projector)
        return {**settings, "mm_projector_type": projector}
    if projector != "mlp2x_gelu":
        raise ConversionError(
            f"{source}: the MoE follows a {projector!r} projector; our parrot_moe projector is built on mlp2x_gelu, "
            "as every released Parrot model is, and cannot express this one"
        )
    if settings["mm_vision_select_feature"] != "cls_patch":
        raise ConversionError(
            f"{source}: mm_vision_select_feature {settings['mm_vision_select_feature']!r} with the MoE; their "
            "forward asserts cls_patch (the projected CLS is the router's query), so this checkpoint never ran"
        )
    if raw["moe_hidden_size"] != raw.get("hidden_size"):
        raise ConversionError(
            f"{source}: moe_hidden_size {raw['moe_hidden_size']} differs from the LLM's hidden_size "
            f"{raw.get('hidden_size')}; the MoE acts on projected tokens, so they must agree"
        )
    if raw.get("moe_top_k") not in (None, raw["num_experts"]):
        logger.info("%s: moe_top_k %s is ignored, as their forward ignores it (all experts run)", source, raw["moe_top_k"])
    return {
        **settings,
        "mm_projector_type": "parrot_moe",
        "moe_num_experts": int(raw["num_experts"]),
        "moe_top_k": None,
        "moe_expert_type": "swiglu",
        "moe_intermediate_size": int(raw["moe_intermediate_size"]),
        "moe_residual_mode": "official",
        "moe_alpha": float(raw.get("moe_weight", 1.0)) if raw.get("use_moe_residual", True) else 0.0,
        "moe_aux_loss_coef": 0.0,
    }


def _stack_experts(experts: dict[tuple[int, str], torch.Tensor], num_experts: int, source: object) -> dict[str, torch.Tensor]:
    """Per-expert SwiGLU weights -> our stacked `gate_up_proj` (E, 2I, C) and `down_proj` (E, C, I)."""
    missing = [
        f"{MOE_PREFIX}experts.{i}.{part}.weight"
        for i in range(num_experts) for part in ("gate_proj", "up_proj", "down_proj") if (i, part) not in experts
    ]
    extra = sorted({i for i, _ in experts if i >= num_experts})
    if missing or extra:
        raise ConversionError(
            f"{source}: expert tensors do not match num_experts={num_experts}: missing {missing[:5]}"
            f"{f', experts beyond the config: {extra}' if extra else ''}"
        )
    shapes = {part: {tuple(experts[(i, part)].shape) for i in range(num_experts)} for part in ("gate_proj", "up_proj", "down_proj")}
    uneven = {part: sorted(found) for part, found in shapes.items() if len(found) > 1}
    if uneven:
        raise ConversionError(f"{source}: experts disagree in shape: {uneven}")
    gate_up = [torch.cat([experts[(i, "gate_proj")], experts[(i, "up_proj")]]) for i in range(num_experts)]
    return {
        "mm_projector.moe.experts.gate_up_proj": torch.stack(gate_up),
        "mm_projector.moe.experts.down_proj": torch.stack([experts[(i, "down_proj")] for i in range(num_experts)]),
    }


def our_tensors(tensors: dict[str, torch.Tensor], raw: dict, vision_keys: set[str], source: object) -> dict[str, torch.Tensor]:
    """Their tensor names -> ours (`language_model.*`, `vision_tower.encoder.*`, `mm_projector.*`).

    `vision_keys` are our tower's own names, so the `vision_model.` level that older transformers
    wrote is kept or dropped as this version's CLIP expects. Unknown names stay as they are, so the
    caller's check reports them as unexpected.
    """
    ours: dict[str, torch.Tensor] = {}
    experts: dict[tuple[int, str], torch.Tensor] = {}
    keep_moe = uses_moe(raw)
    for name, tensor in tensors.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue  # a buffer older transformers saved; recomputed from the config
        if name.startswith(VISION_PREFIX):
            rest = name[len(VISION_PREFIX):]
            flat = rest.removeprefix("vision_model.")
            ours["vision_tower.encoder." + (rest if rest in vision_keys else flat)] = tensor
        elif name.startswith(PROJECTOR_PREFIX):
            ours["mm_projector." + name[len(PROJECTOR_PREFIX):]] = tensor
        elif name.startswith(MOE_PREFIX):
            expert = _EXPERT_KEY.match(name)
            if not keep_moe:
                continue
            if expert:
                experts[(int(expert.group(1)), expert.group(2))] = tensor
            elif name == MOE_PREFIX + "gate.weight":
                ours["mm_projector.moe.router.gate.weight"] = tensor
            else:
                ours[name] = tensor
        elif name.startswith("model.") or name.startswith("lm_head."):
            ours["language_model." + name] = tensor
        else:
            ours[name] = tensor
    if keep_moe:
        ours.update(_stack_experts(experts, int(raw["num_experts"]), source))
    return ours
