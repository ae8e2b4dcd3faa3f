"""Row operations on a transformers `DynamicCache` for continuous batching with left padding.

Keys and values of each layer are (B, heads, T, head_dim). Rows of different lengths share one
cache by padding on the left: a padded column holds zeros and the batch's attention mask has 0 there,
so attention never reads it. transformers offers `batch_select_indices` (keep rows); joining two
caches of different lengths and dropping leftmost columns are written here.

Only full-attention layers (`DynamicLayer` itself) can be joined this way: a sliding-window layer
keeps the last W columns, padding included, so left padding would change what it attends to.
`supports_joining` says whether a cache qualifies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def supports_joining(cache) -> bool:
    """True when every layer of `cache` is a plain full-attention `DynamicLayer`."""
    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer for layer in cache.layers)


def _pad_left(tensor: torch.Tensor, columns: int) -> torch.Tensor:
    return F.pad(tensor, (0, 0, columns, 0)) if columns else tensor


def join_rows(running: DynamicCache, joining: DynamicCache) -> DynamicCache:
    """`running`'s rows followed by `joining`'s, the shorter cache padded on the left to the longer's
    length. Modifies and returns `running`."""
    width = max(running.get_seq_length(), joining.get_seq_length())
    for ours, theirs in zip(running.layers, joining.layers):
        pad_ours, pad_theirs = width - ours.keys.shape[-2], width - theirs.keys.shape[-2]
        ours.keys = torch.cat([_pad_left(ours.keys, pad_ours), _pad_left(theirs.keys, pad_theirs)])
        ours.values = torch.cat([_pad_left(ours.values, pad_ours), _pad_left(theirs.values, pad_theirs)])
    return running


def keep_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keep only the batch rows `rows` (1-D indices), in that order."""
    cache.batch_select_indices(rows)


def drop_leading_columns(cache: DynamicCache, columns: int) -> None:
    """Remove the `columns` leftmost positions (padding no remaining row needs)."""
    if columns:
        for layer in cache.layers:
            layer.keys = layer.keys[..., columns:, :]
            layer.values = layer.values[..., columns:, :]
