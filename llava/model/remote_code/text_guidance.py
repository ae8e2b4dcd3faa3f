"""Gathering each image's text guidance (the prompt's word embeddings a text-guided projector reads).

Shared by `llava.model.multimodal_merge.text_guidance` (our sentinel format) and the exported
folders' `modeling_parrot_llava` (transformers' placeholder format): both decide which tokens count
and which sample each image belongs to, then call `gather_guidance`.
"""

from __future__ import annotations

import torch


def gather_guidance(
    token_embeds: torch.Tensor, guidance_mask: torch.Tensor, owner: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """token_embeds (B, T, C); guidance_mask (num_images, T) bool, True on the guidance tokens of each
    image's row; owner (num_images,) the row of each image. Returns text_embeds (num_images, K, C) and
    text_mask (num_images, K): the guidance tokens gathered to the front in their original order,
    K = the longest guidance."""
    counts = guidance_mask.sum(dim=1)
    width = int(counts.max()) if len(counts) else 0
    # A stable sort puts each image's guidance positions first, in their original order.
    columns = torch.sort(guidance_mask.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :width]
    text_embeds = token_embeds[owner[:, None], columns]
    text_mask = torch.arange(width, device=guidance_mask.device)[None, :] < counts[:, None]
    return text_embeds, text_mask
