"""The parrot_moe projector matches a float64 reference of Eq 2-5 written here, sample by sample."""

import math
from types import SimpleNamespace

import pytest
import torch

from llava.model.multimodal_projector import ROUTING_METRIC, build_vision_projector
from parrot_moe import ParrotMoeProjector

D, C, INNER, E, N, T, B = 12, 16, 20, 4, 5, 7, 3


def _config(**moe) -> SimpleNamespace:
    select = moe.pop("select", "patch")
    return SimpleNamespace(
        mm_projector_type="parrot_moe",
        mm_hidden_size=D,
        hidden_size=C,
        mm_vision_select_feature=select,
        moe_num_experts=E,
        moe_intermediate_size=INNER,
        **moe,
    )


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(B, 1 + N, D, generator=gen, dtype=torch.float64)
    text = torch.randn(B, T, C, generator=gen, dtype=torch.float64) * 3
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, :T] = True
    mask[1, 2:5] = True
    mask[2, [0, 3, 6]] = True
    return image, text, mask


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _silu(x):
    return x / (1 + torch.exp(-x))


def _expert(params: dict, i: int, x: torch.Tensor, expert_type: str) -> torch.Tensor:
    if expert_type == "mlp_silu":
        inner = _silu(x @ params["moe.experts.fc1_weight"][i].T + params["moe.experts.fc1_bias"][i])
        return inner @ params["moe.experts.fc2_weight"][i].T + params["moe.experts.fc2_bias"][i]
    gate_up = params["moe.experts.gate_up_proj"][i]
    gate, up = x @ gate_up[:INNER].T, x @ gate_up[INNER:].T
    return (_silu(gate) * up) @ params["moe.experts.down_proj"][i].T


REFERENCE_DEFAULTS = dict(
    expert_type="mlp_silu", top_k=E, renormalize=False, residual_mode="paper", alpha=1.0, emit_cls=False
)


def reference_forward(proj: ParrotMoeProjector, image, text, mask, **spec) -> torch.Tensor:
    """Eq 2-5 for one sample at a time, in float64, from the module's parameters only.

    spec overrides REFERENCE_DEFAULTS (the settings the projector was built with).
    """
    spec = {**REFERENCE_DEFAULTS, **spec}
    params = {k: v.detach().double() for k, v in proj.state_dict().items()}
    outputs = []
    for b in range(image.shape[0]):
        first = _gelu(image[b] @ params["0.weight"].T + params["0.bias"])
        h_all = first @ params["2.weight"].T + params["2.bias"]
        cls = h_all[0]
        keys = text[b][mask[b]]
        if keys.shape[0] == 0:
            guidance = torch.zeros(C, dtype=torch.float64)
        else:
            scores = keys @ cls / math.sqrt(C)
            attn = torch.exp(scores - scores.max())
            guidance = (attn / attn.sum()) @ keys
        logits = params["moe.router.gate.weight"] @ guidance
        probs = torch.exp(logits - logits.max())
        probs = probs / probs.sum()
        chosen = sorted(range(E), key=lambda e: -probs[e].item())[: spec["top_k"]]
        weights = {e: probs[e] for e in chosen}
        if spec["renormalize"]:
            total = sum(weights.values())
            weights = {e: w / total for e, w in weights.items()}
        h = h_all if spec["emit_cls"] else h_all[1:]
        moe = sum(w * _expert(params, e, h, spec["expert_type"]) for e, w in weights.items())
        alpha = spec["alpha"]
        outputs.append(h + alpha * moe if spec["residual_mode"] == "paper" else moe + alpha * h)
    return torch.stack(outputs)


def _relative_error(out: torch.Tensor, expected: torch.Tensor) -> float:
    return ((out - expected).norm() / expected.norm()).item()


CASES = [
    dict(expert_type=et, top_k=k, residual_mode=mode, select=sel, renormalize=False)
    for et in ("mlp_silu", "swiglu")
    for k in (None, 2)
    for mode in ("paper", "official")
    for sel in ("patch", "cls_patch")
] + [
    dict(expert_type="mlp_silu", top_k=2, residual_mode="paper", select="patch", renormalize=True),
    dict(expert_type="swiglu", top_k=1, residual_mode="official", select="cls_patch", renormalize=False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_projector_matches_float64_reference(case):
    torch.manual_seed(1)
    moe = dict(
        moe_expert_type=case["expert_type"],
        moe_top_k=case["top_k"],
        moe_residual_mode=case["residual_mode"],
        moe_renormalize_top_k=case["renormalize"],
    )
    proj = build_vision_projector(_config(select=case["select"], **moe)).double()
    image, text, mask = _inputs()
    out = proj(image, text_embeds=text, text_mask=mask).visual_tokens
    expected = reference_forward(
        proj,
        image,
        text,
        mask,
        expert_type=case["expert_type"],
        top_k=case["top_k"] or E,
        renormalize=case["renormalize"],
        residual_mode=case["residual_mode"],
        alpha=1.0 if case["residual_mode"] == "paper" else 0.1,
        emit_cls=case["select"] == "cls_patch",
    )
    assert out.shape == (B, N + (case["select"] == "cls_patch"), C)
    assert _relative_error(out, expected) <= 1e-6


def test_explicit_alpha_matches_reference():
    torch.manual_seed(2)
    proj = build_vision_projector(_config(moe_alpha=0.37, moe_residual_mode="official")).double()
    image, text, mask = _inputs(seed=3)
    out = proj(image, text_embeds=text, text_mask=mask).visual_tokens
    expected = reference_forward(proj, image, text, mask, residual_mode="official", alpha=0.37)
    assert _relative_error(out, expected) <= 1e-6


def test_sample_without_guidance_text_matches_reference_uniform_routing():
    torch.manual_seed(4)
    proj = build_vision_projector(_config(moe_top_k=2)).double()
    image, text, mask = _inputs(seed=5)
    mask[1] = False
    result = proj(image, text_embeds=text, text_mask=mask)
    out = result.visual_tokens
    expected = reference_forward(proj, image, text, mask, top_k=2)
    assert torch.isfinite(out).all()
    assert torch.allclose(result.metrics[ROUTING_METRIC][1], torch.full((E,), 1 / E, dtype=torch.float64))
    assert _relative_error(out, expected) <= 1e-6
