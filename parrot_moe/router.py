"""Routing of the Parrot MoE: text guidance (Eq 2), the router (Eq 3), top-k selection and the
optional load-balancing loss. Parrot routes one vector per *sample* (not per token)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmaxes run in at least float32, so bf16/fp16 training does not lose the routing."""
    return torch.promote_types(dtype, torch.float32)


def route_by_text(
    query: torch.Tensor, text_embeds: torch.Tensor | None, text_mask: torch.Tensor | None
) -> torch.Tensor:
    """Eq 2: H'_v = softmax(H_v^cls H_t^T / sqrt(C)) H_t over each sample's masked text tokens.

    query: (B, C) projected vision CLS. text_embeds: (B, T, C) word embeddings. text_mask: (B, T)
    bool, True on guidance tokens (None = all tokens). Returns (B, C) in query's dtype.

    A sample without guidance text (`text_embeds is None`, or an all-False mask row) gets a zero
    guidance vector; with the bias-free router that means uniform routing P = 1/E. Never NaN.
    """
    if text_embeds is None:
        return torch.zeros_like(query)
    dtype = _compute_dtype(query.dtype)
    q, keys = query.to(dtype), text_embeds.to(dtype)
    scores = torch.einsum("bc,btc->bt", q, keys) / math.sqrt(q.shape[-1])
    if text_mask is None:
        weights = scores.softmax(dim=-1)
    else:
        mask = text_mask.to(device=scores.device, dtype=torch.bool)
        # finfo.min (not -inf) keeps an all-masked row finite; multiplying by the mask then zeroes it.
        scores = scores.masked_fill(~mask, torch.finfo(dtype).min)
        weights = scores.softmax(dim=-1) * mask
    return torch.einsum("bt,btc->bc", weights, keys).to(query.dtype)


class TextGuidedRouter(nn.Module):
    """Eq 3: P = softmax(Linear_{C->E}(H'_v)). Bias-free, as in the authors' code.

    forward(guidance (B, C)) -> probabilities (B, E), in guidance's dtype.

    Two options depart from the paper, both off by default (`--moe_guidance_norm none`,
    `--moe_router_temperature 1.0`): `guidance_norm="layernorm"` standardises H'_v over its channels
    (no learned scale or shift) before the gate, and `temperature` divides the logits. H'_v is a
    weighted mean of word embeddings, whose norm is small in an LLM (about 0.5 in the quickstart's);
    the gate's logits then spread by a few hundredths and the softmax stays near-uniform even once
    the router's input identifies the language (see `parrot_moe.diagnostics`). A zero H'_v (no
    guidance text) stays zero under both, so it still routes uniformly.
    """

    def __init__(
        self, hidden_size: int, num_experts: int, guidance_norm: str = "none", temperature: float = 1.0
    ) -> None:
        super().__init__()
        if guidance_norm not in ("none", "layernorm"):
            raise ValueError(f"guidance_norm {guidance_norm!r}: use none or layernorm")
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.guidance_norm = guidance_norm
        self.temperature = float(temperature)

    def forward(self, guidance: torch.Tensor) -> torch.Tensor:
        if self.guidance_norm == "layernorm":
            guidance = nn.functional.layer_norm(guidance, guidance.shape[-1:])
        logits = self.gate(guidance)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return logits.softmax(dim=-1, dtype=_compute_dtype(logits.dtype)).to(guidance.dtype)

    def extra_repr(self) -> str:
        return f"guidance_norm={self.guidance_norm}, temperature={self.temperature}"


def select_experts(
    probs: torch.Tensor, top_k: int, renormalize: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of the routing probabilities (B, E) -> (weights (B, k), expert indices (B, k)).

    With `renormalize` the k selected weights are divided by their sum. Gradients flow through the
    weights into the router. Ties go to the lower expert index (a stable sort rather than
    `torch.topk`, whose tie order is unspecified), so uniform routing picks experts 0..k-1.
    """
    weights, indices = torch.sort(probs, dim=-1, descending=True, stable=True)
    weights, indices = weights[:, :top_k], indices[:, :top_k]
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, indices


def load_balancing_loss(probs: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer load-balancing loss over the samples of a batch (unscaled).

    probs: (B, E). loss = E * sum_i f_i * p_i, where f_i is the fraction of samples whose top-1
    expert is i (not differentiable) and p_i the mean routing probability of expert i. It equals 1
    when routing is balanced and grows towards E as routing collapses onto one expert. f uses the
    top-1 choice whatever moe_top_k is, so the loss also carries a signal for dense routing.
    """
    num_experts = probs.shape[-1]
    top1 = probs.argmax(dim=-1)
    fraction = torch.bincount(top1, minlength=num_experts).to(probs.dtype) / probs.shape[0]
    return num_experts * torch.sum(fraction * probs.mean(dim=0))
