"""Choose each row's next token with that row's own settings and random generator.

Greedy rows take the argmax; sampling rows apply their temperature, then their top-p (nucleus)
filter, and draw from the result with their own `torch.Generator`. A row's draw therefore depends
only on its logits and its seed, never on which other requests share the batch.
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
    chosen = logits.argmax(dim=-1).tolist()
    for i, row in enumerate(rows):
        temperature = float(row.params.temperature)
        if temperature <= 0:
            continue
        scaled = top_p_filter(logits[i].float() / temperature, float(row.params.top_p))
        probs = scaled.softmax(dim=-1)
        chosen[i] = int(torch.multinomial(probs, 1, generator=row.generator_on(probs.device)).item())
    return chosen
