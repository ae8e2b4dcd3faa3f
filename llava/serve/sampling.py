"""Choose each row's next token with that row's own settings and random generator.

Greedy rows take the most likely token; sampling rows apply their temperature, then their top-p
(nucleus) filter, and draw from the result with their own `torch.Generator`. A row's draw therefore
depends only on its logits and its seed, never on which other requests share the batch.

Everything runs as tensor operations on the whole batch (the rows' temperatures and top-p values
are columns of one tensor); the only per-row Python is one uniform number per sampling row from the
row's own generator. The draw inverts the cumulative distribution in two levels: the sums of
blocks of up to `_BLOCK` tokens locate the block, a running sum inside that one block locates the token.
On a CPU this is several times cheaper than a cumulative sum over the whole 50k-150k vocabulary
(or `torch.multinomial`), and gives the same distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from llava.serve.request import GenerationRequest

_BLOCK = 256  # tokens per block of the two-level inverse-CDF draw (its largest divisor of the vocabulary size)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """(B, V) -> (B,) index of each row's largest logit (the first on ties). `max(dim)` is several
    times faster than `argmax` on the CPU for vocabulary-sized rows."""
    return logits.max(dim=-1).indices


def top_p_filter(logits: torch.Tensor, top_p: float | torch.Tensor) -> torch.Tensor:
    """logits (..., V) with every token outside the smallest set whose probability reaches `top_p`
    (a number, or one per row as a (..., 1) tensor) set to -inf; the most likely token always stays."""
    if not torch.is_tensor(top_p) and top_p >= 1.0:
        return logits
    ordered, order = torch.sort(logits, dim=-1, descending=True)
    probs = ordered.softmax(dim=-1)
    drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # the mass before the token already reaches top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def draw(weights: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """(S, V) non-negative unnormalised weights and (S,) numbers in [0, 1) -> (S,) the token at which
    each row's running sum first exceeds `uniform` times its total (inverse-CDF sampling)."""
    rows, vocab = weights.shape
    size = math.gcd(vocab, _BLOCK)  # blocks tile the vocabulary exactly: no blocks copy
    blocks = weights.view(rows, -1, size)
    block_sums = blocks.sum(dim=-1)  # (S, blocks)
    block_cum = block_sums.cumsum(dim=-1)
    target = uniform * block_cum[:, -1]
    block = torch.searchsorted(block_cum, target[:, None], right=True)[:, 0].clamp(max=block_cum.shape[1] - 1)
    before = torch.where(block > 0, block_cum.gather(1, (block - 1).clamp(min=0)[:, None])[:, 0], torch.zeros_like(target))
    inside = blocks[torch.arange(rows, device=weights.device), block].cumsum(dim=-1)  # (S, size)
    offset = torch.searchsorted(inside, (target - before)[:, None], right=True)[:, 0].clamp(max=size - 1)
    return (block * size + offset).clamp(max=vocab - 1)


def next_tokens(logits: torch.Tensor, rows: Sequence[GenerationRequest]) -> list[int]:
    """logits (B, V) of each row's last position -> the B chosen token ids."""
    sampled = [i for i, row in enumerate(rows) if row.params.temperature > 0]
    if not sampled:
        return greedy(logits).tolist()
    device = logits.device
    every_row = len(sampled) == len(rows)
    chosen = torch.empty(len(rows), dtype=torch.long, device=device) if every_row else greedy(logits)
    scaled = (logits if every_row else logits[sampled]).float()
    values = [float(rows[i].params.temperature) for i in sampled]
    temperatures = torch.tensor([[t] for t in values], device=device)
    top_ps = [float(rows[i].params.top_p) for i in sampled]
    if min(top_ps) < 1.0:
        scaled = top_p_filter(scaled / temperatures, torch.tensor(top_ps, device=device)[:, None])
        weights = (scaled - scaled.amax(dim=-1, keepdim=True)).exp_()
    else:
        weights = scaled - scaled.amax(dim=-1, keepdim=True)
        if any(t != 1.0 for t in values):  # x / 1.0 is x exactly: temperature 1 skips a vocabulary-wide pass
            weights.div_(temperatures)
        weights.exp_()
    uniform = torch.cat([torch.rand(1, generator=rows[i].generator_on(device), device=device) for i in sampled])
    drawn = draw(weights, uniform)
    if every_row:
        return drawn.tolist()
    chosen[sampled] = drawn
    return chosen.tolist()
