"""The one place that knows how long a sequence is once its images are spliced in.

An `<image>` sentinel (IMAGE_TOKEN_INDEX) in `input_ids` becomes `tokens_per_image` LLM positions:
`LlavaForCausalLM.num_image_tokens`, which asks the projector (`Projector.num_output_tokens`), so a
projector that emits one token per patch (`mlp2x_gelu`), drops the CLS (`parrot_moe` with a CLS
router query) or emits a fixed number of queries (`pargo`) is counted by what it emits, never by the
patch grid. The merge adds nothing else: a newline after `<image>` or `<im_start>`/`<im_end>` are
ordinary text tokens of `input_ids`. Every other token is one position, padding none.

Used by the merge (`multimodal_merge`, destinations of every token), the dataset's truncation budget
and packing's lengths (`llava.data.dataset`), the trainer's token counts and serving's context check.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llava.constants import IMAGE_TOKEN_INDEX


def spliced_positions(num_ids, num_sentinels, tokens_per_image: int):
    """LLM positions of `num_ids` ids (text tokens and sentinels) of which `num_sentinels` are
    sentinels: each sentinel becomes `tokens_per_image` positions, every other id one. Ints or
    tensors (elementwise); every count below is this formula."""
    if tokens_per_image < 0:
        raise ValueError(f"tokens_per_image must be >= 0, got {tokens_per_image}")
    return num_ids + num_sentinels * (tokens_per_image - 1)


def token_widths(
    input_ids: torch.Tensor, tokens_per_image: int, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """LLM positions each token of `input_ids` (..., T) takes once spliced: `tokens_per_image` for a
    sentinel, 1 for text, 0 where `attention_mask` is 0 (padding)."""
    keep = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    return spliced_positions(keep.long(), (keep & (input_ids == IMAGE_TOKEN_INDEX)).long(), tokens_per_image)


def merged_length(
    input_ids: torch.Tensor | Sequence[int],
    tokens_per_image: int,
    attention_mask: torch.Tensor | None = None,
    max_length: int | None = None,
) -> torch.Tensor | int:
    """Length of the spliced sequence: text tokens plus `tokens_per_image` per sentinel, cut at
    `max_length` as the merge cuts it. A tensor (..., T) gives a tensor (...) of lengths (one per
    row); a list of ids (one unpadded sequence, no mask) gives an int."""
    if isinstance(input_ids, torch.Tensor):
        lengths = token_widths(input_ids, tokens_per_image, attention_mask).sum(dim=-1)
        return lengths if max_length is None else lengths.clamp(max=max_length)
    if attention_mask is not None:
        raise ValueError("merged_length: an attention_mask goes with a tensor of ids, not a list")
    ids = list(input_ids)
    length = spliced_positions(len(ids), ids.count(IMAGE_TOKEN_INDEX), tokens_per_image)
    return length if max_length is None else min(length, max_length)


def image_positions(num_images: int, tokens_per_image: int) -> int:
    """LLM positions `num_images` images take once spliced."""
    return spliced_positions(num_images, num_images, tokens_per_image)


def text_budget(max_length: int, num_images: int, tokens_per_image: int) -> int:
    """How many ids (text tokens and the `num_images` sentinels) fit in `max_length` LLM positions:
    the largest n such that n ids holding those sentinels have a `merged_length` <= max_length (0 if
    even the images alone do not fit)."""
    return max(max_length - image_positions(num_images, tokens_per_image) + num_images, 0)
