"""Splice projected image features into the token sequence, vectorised over the batch.

Each IMAGE_TOKEN_INDEX sentinel in `input_ids` is replaced by the N visual tokens of its image.
Instead of a Python loop over samples (upstream LLaVA), every token gets a width (N for a sentinel,
1 for text, 0 for padding: `llava.model.visual_tokens.token_widths`, the same count the dataset,
packing, the trainer and serving use), an exclusive cumulative sum of widths gives its destination, and one
indexed write per modality builds the output. Padding is re-applied afterwards, on the right for
training and on the left for batched generation; sequences are cut at `max_length`.

Packed rows (several samples in one row, `llava.data.packing`) are marked by `position_ids` that restart
at 0 at each sample. The merge keeps that: merged positions restart at the same samples, so the LLM
(given no 2-D attention mask) builds its block-causal mask from them, and an image's text guidance is
taken from its own sample only.

Why sentinels and not transformers Llava's N placeholder tokens per image + `masked_scatter`
(measured by `bench/merge_splice.py`, batch 8, one image per row, 1 CPU thread): on the tiny model
(16 visual tokens of width 64) the bare `masked_scatter` on ids already expanded is 3.3x faster
(0.12 ms against 0.40 ms, which also builds labels, mask and positions), but only 1.2x once the
expansion, labels and mask it needs are counted (0.33 ms); at 7B shapes (576 tokens of width 4096)
it is no faster (splice 658 ms, masked_scatter 701 ms, expand + masked_scatter 664 ms). A fraction of
a millisecond per batch does not pay for changing the format: every tokenized sample, packing's
lengths, serving's prompts and upstream checkpoints carry one -200 per image, placeholders would need
a token id in each tokenizer's vocabulary, and the sentinel form is what lets `max_length` cut a
sample after its images are spliced and text guidance find each image's own sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.model.multimodal_projector.base import ProjectorOutput
from llava.model.remote_code.text_guidance import gather_guidance
from llava.model.visual_tokens import token_widths


@dataclass
class MergedInputs:
    inputs_embeds: torch.Tensor  # (B, L, C)
    attention_mask: torch.Tensor  # (B, L) long
    position_ids: torch.Tensor  # (B, L)
    labels: torch.Tensor | None  # (B, L)
    projector_output: ProjectorOutput | None = None  # what the projector returned for the images


def image_owner(input_ids: torch.Tensor) -> torch.Tensor:
    """Sample index of each image, in the order images are consumed: (num_images,)."""
    return (input_ids == IMAGE_TOKEN_INDEX).nonzero(as_tuple=True)[0]


def image_sample_mask(input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """(num_images, T) bool: the tokens of each image's own sample in its (packed) row.

    Samples are told apart by `position_ids` (B, T), which restart at 0 at each sample.
    """
    sample = (position_ids == 0).cumsum(dim=1)
    rows, cols = (input_ids == IMAGE_TOKEN_INDEX).nonzero(as_tuple=True)
    return sample[rows] == sample[rows, cols][:, None]


def prompt_token_mask(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor | None
) -> torch.Tensor:
    """(B, T) bool: prompt text tokens (not answers, not padding, not image sentinels).

    This is the text guidance handed to projectors that declare `requires_text_guidance`.
    Without labels (inference) the whole non-padding prompt counts.
    """
    mask = input_ids != IMAGE_TOKEN_INDEX
    if attention_mask is not None:
        mask &= attention_mask.bool()
    if labels is not None:
        mask &= labels == IGNORE_INDEX
    return mask


def text_guidance(
    token_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor | None,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's text guidance: the prompt tokens (`prompt_token_mask`) of the sample it belongs to.

    token_embeds (B, T, C); input_ids, attention_mask, labels (B, T); position_ids (B, T) only for packed
    rows, where they restrict each image to its own sample. Returns text_embeds (num_images, K, C) and
    text_mask (num_images, K), the guidance tokens gathered to the front, K = the longest guidance.
    """
    owner = image_owner(input_ids)
    mask = prompt_token_mask(input_ids, attention_mask, labels)[owner]
    if position_ids is not None:
        mask &= image_sample_mask(input_ids, position_ids)
    return gather_guidance(token_embeds, mask, owner)


def merge_image_features(
    input_ids: torch.Tensor,
    token_embeds: torch.Tensor,
    image_features: torch.Tensor | None,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    max_length: int | None = None,
    padding_side: str = "right",
    position_ids: torch.Tensor | None = None,
) -> MergedInputs:
    """Build the LLM inputs.

    input_ids (B, T) with sentinels; token_embeds (B, T, C), embeddings of input_ids (values at
    sentinel positions are ignored); image_features (num_images, N, C) in row-major sentinel order;
    attention_mask (B, T) with 0 on padding (any side); labels (B, T) or None; position_ids (B, T)
    only for packed rows: positions that restart at 0 at each sample. The merged positions then
    restart at the same samples (padding continues the last one); otherwise they count the real
    tokens of each row from 0.
    Returns tensors of length L = min(longest merged sample, max_length).
    """
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    batch, _, hidden = token_embeds.shape
    is_image = input_ids == IMAGE_TOKEN_INDEX
    num_sentinels = int(is_image.sum())
    num_images = 0 if image_features is None else image_features.shape[0]
    if num_sentinels != num_images:
        raise ValueError(
            f"the batch has {num_sentinels} image tokens ({IMAGE_TOKEN_INDEX}) in input_ids but {num_images} "
            "images were given; every '<image>' marker needs exactly one image"
        )
    keep = torch.ones_like(is_image) if attention_mask is None else attention_mask.bool()
    tokens_per_image = image_features.shape[1] if num_images else 1

    width = token_widths(input_ids, tokens_per_image, keep)
    start = width.cumsum(dim=1) - width  # destination of each token before re-padding
    lengths = width.sum(dim=1)
    total = int(lengths.max()) if batch else 0
    if max_length is not None:
        total = min(total, max_length)
        lengths = lengths.clamp(max=total)
    offset = (total - lengths) if padding_side == "left" else torch.zeros_like(lengths)

    embeds = token_embeds.new_zeros(batch, total, hidden)
    is_text = keep & ~is_image & (start < total)
    b_text, t_text = is_text.nonzero(as_tuple=True)
    dest_text = start[b_text, t_text] + offset[b_text]
    embeds[b_text, dest_text] = token_embeds[b_text, t_text]

    if num_images:
        b_img, t_img = is_image.nonzero(as_tuple=True)
        pos = start[b_img, t_img][:, None] + torch.arange(tokens_per_image, device=input_ids.device)
        valid = pos < total
        rows = b_img[:, None].expand_as(pos)
        embeds[rows[valid], (pos + offset[b_img][:, None])[valid]] = image_features.to(embeds.device, embeds.dtype)[valid]

    positions = torch.arange(total, device=input_ids.device)[None, :]
    if padding_side == "left":
        new_mask = positions >= offset[:, None]
    else:
        new_mask = positions < lengths[:, None]
    if position_ids is None:
        merged_positions = (new_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    else:
        merged_positions = _restart_at_samples(position_ids, keep, start, offset, total)

    new_labels = None
    if labels is not None:
        new_labels = labels.new_full((batch, total), IGNORE_INDEX)
        new_labels[b_text, dest_text] = labels[b_text, t_text]
    return MergedInputs(embeds, new_mask.long(), merged_positions, new_labels)


def _restart_at_samples(
    position_ids: torch.Tensor, keep: torch.Tensor, start: torch.Tensor, offset: torch.Tensor, total: int
) -> torch.Tensor:
    """Merged positions (B, L) that restart at 0 where each packed sample begins.

    A sample begins at a kept token whose position is 0; `start` is every token's merged destination.
    Each merged slot's position is its distance from the last sample start at or before it.
    """
    batch = position_ids.shape[0]
    first = keep & (position_ids == 0) & (start < total)
    rows, cols = first.nonzero(as_tuple=True)
    slots = torch.arange(total, device=position_ids.device).expand(batch, total)
    begins = torch.zeros(batch, total, dtype=torch.bool, device=position_ids.device)
    begins[rows, start[rows, cols] + offset[rows]] = True
    return slots - torch.where(begins, slots, 0).cummax(dim=1).values
