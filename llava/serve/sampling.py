"""Choose each row's next token with that row's own settings and random generator.

Greedy rows take the argmax; sampling rows apply their temperature, then their top-p (nucleus)
filter, and draw from the result with their own `torch.Generator`. A row's draw therefore depends
only on its logits and its seed, never on which other requests share the batch.

The draw inverts the cumulative distribution: one uniform number per row from the row's generator,
located in the row's running sum of probabilities. On a CPU this is several times cheaper than
`torch.multinomial` over a 50k-150k vocabulary, and everything but the one number per row runs once
for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llava.serve.request import GenerationRequest


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """logits (V,) with every token outside the smallest set whose probability reaches `top_p` set
    to -inf (the most likely token always stays)."""
    if top_p >= 1.0:
        return logits
    ordered, order = torch.sort(logits, descending=True)
    probs = ordered.softmax(dim=-1)
    drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # the mass before the token already reaches top_p
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_tokens(logits: torch.Tensor, rows: Sequence[GenerationRequest]) -> list[int]:
    """logits (B, V) of each row's last position -> the B chosen token ids."""
    sampled = [i for i, row in enumerate(rows) if row.params.temperature > 0]
    if not sampled:
        return logits.argmax(dim=-1).tolist()
    chosen = logits.argmax(dim=-1) if len(sampled) < len(rows) else torch.empty(len(rows), dtype=torch.long, device=logits.device)
    temperatures = torch.tensor([float(rows[i].params.temperature) for i in sampled], device=logits.device)
    scaled = logits[sampled].float() / temperatures[:, None]  # (S, V), a copy
    for j, i in enumerate(sampled):
        if rows[i].params.top_p < 1.0:
            scaled[j] = top_p_filter(scaled[j], float(rows[i].params.top_p))
    scaled -= scaled.max(dim=-1, keepdim=True).values
    cumulative = scaled.exp_().cumsum_(dim=-1)  # unnormalised: the draw is scaled by each row's total
    uniform = torch.cat([torch.rand(1, generator=rows[i].generator_on(logits.device), device=logits.device) for i in sampled])
    drawn = torch.searchsorted(cumulative, (uniform * cumulative[:, -1])[:, None], right=True)[:, 0]
    chosen[sampled] = drawn.clamp(max=logits.shape[-1] - 1)
    return chosen.tolist()
