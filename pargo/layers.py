"""The Q-Former blocks of ParGo: learned queries, masked attention through SDPA, and one layer.

Norm placement follows BERT, which BLIP-2's Q-Former and the ParGo release build on: post-norm,
`x = LayerNorm(x + sublayer(x))` after each of self-attention, cross-attention and the MLP, and a
LayerNorm over the query embeddings plus their positions before the first layer. No dropout.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# BERT's LayerNorm epsilon (layer_norm_eps in its config).
LAYER_NORM_EPS = 1e-12


class MaskedAttention(nn.Module):
    """Multi-head attention of `width` over a context of `context_width`, masked per (query, key).

    forward(hidden (B, Q, width), context (B, K, context_width), mask (Q, K) bool, True = may attend)
    -> (B, Q, width). Every mask row must allow at least one key.
    """

    def __init__(self, width: int, context_width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(context_width, width)
        self.v_proj = nn.Linear(context_width, width)
        self.out_proj = nn.Linear(width, width)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, width) -> (B, heads, L, width / heads)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        query = self._split_heads(self.q_proj(hidden))
        key = self._split_heads(self.k_proj(context))
        value = self._split_heads(self.v_proj(context))
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        return self.out_proj(attended.transpose(1, 2).flatten(2))


class QueryEmbeddings(nn.Module):
    """Learned query embeddings plus learned positions, layer-normed: forward(batch) -> (B, Q, width).

    Both start from N(0, 0.02), BERT's and BLIP-2's initialisation of query tokens and positions.
    """

    def __init__(self, num_queries: int, width: int) -> None:
        super().__init__()
        self.embeddings = nn.Parameter(torch.empty(num_queries, width))
        self.positions = nn.Parameter(torch.empty(num_queries, width))
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.embeddings, std=0.02)
        nn.init.normal_(self.positions, std=0.02)

    def forward(self, batch: int) -> torch.Tensor:
        return self.norm(self.embeddings + self.positions).expand(batch, -1, -1)


class QformerLayer(nn.Module):
    """Self-attention over the queries, cross-attention from the queries to the patches, an MLP.

    forward(hidden (B, Q, width), patches (B, N, D), self_mask (Q, Q), cross_mask (Q, N)) -> (B, Q, width).
    """

    def __init__(self, width: int, vision_width: int, heads: int) -> None:
        super().__init__()
        self.self_attn = MaskedAttention(width, width, heads)
        self.self_attn_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.cross_attn = MaskedAttention(width, vision_width, heads)
        self.cross_attn_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.mlp_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def forward(
        self, hidden: torch.Tensor, patches: torch.Tensor, self_mask: torch.Tensor, cross_mask: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.self_attn_norm(hidden + self.self_attn(hidden, hidden, self_mask))
        hidden = self.cross_attn_norm(hidden + self.cross_attn(hidden, patches, cross_mask))
        return self.mlp_norm(hidden + self.mlp(hidden))
