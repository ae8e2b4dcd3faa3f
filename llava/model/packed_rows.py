"""Packed rows for flash attention: transformers' varlen path needs the samples in one row.

With sdpa, eager and flex attention, transformers' `masking_utils` turns position ids that restart at 0
into a block-causal mask for any number of rows. Flash attention takes no mask: transformers switches to
flash-attn's varlen kernel (`_is_packed_sequence`, cutting at every position 0) only when the batch is a
single row. Packed rows are therefore laid end to end before the LLM when flash attention is used.
"""

from __future__ import annotations

import torch

from llava.constants import IGNORE_INDEX


def join_rows_for_flash_attention(
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    position_ids: torch.Tensor,
    labels: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Packed rows (B, L[, C]) laid end to end as one row (1, B*L[, C]), for flash attention.

    transformers selects flash-attn's varlen kernel from position ids only for a single row (for
    several rows it would attend across samples); it cuts the row wherever the positions restart.
    A row's first label is never a target within its row, so it is masked before the rows are joined.
    """
    if labels is not None:
        labels = labels.clone()
        labels[:, 0] = IGNORE_INDEX
        labels = labels.reshape(1, -1)
    if input_ids is not None:
        input_ids = input_ids.reshape(1, -1)
    if inputs_embeds is not None:
        inputs_embeds = inputs_embeds.reshape(1, -1, inputs_embeds.shape[-1])
    return input_ids, inputs_embeds, position_ids.reshape(1, -1), labels
