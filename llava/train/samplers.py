"""`--group_by_modality_length`: batches that are all-image or all-text, similar lengths together
(upstream LLaVA's sampler, on a seeded generator so every rank draws the same order)."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


def modality_grouped_indices(lengths: list[int], batch_size: int, world_size: int, generator=None) -> list[int]:
    """Indices such that every global batch is all-multimodal (length > 0) or all text-only (< 0),
    with similar lengths inside each batch; batch order is random. Mixed leftovers go last."""
    def grouped(indices: list[int]) -> list[list[int]]:
        if not indices:
            return []
        perm = [indices[i] for i in torch.randperm(len(indices), generator=generator)]
        mega = batch_size * world_size
        chunks = [perm[i : i + mega] for i in range(0, len(perm), mega)]
        return [sorted(c, key=lambda i: -abs(lengths[i])) for c in chunks]

    multimodal = grouped([i for i, n in enumerate(lengths) if n > 0])
    text_only = grouped([i for i, n in enumerate(lengths) if n <= 0])
    full = [c for c in multimodal + text_only if len(c) == batch_size * world_size]
    partial = [i for c in multimodal + text_only if len(c) != batch_size * world_size for i in c]
    order = torch.randperm(len(full), generator=generator).tolist()
    return [i for j in order for i in full[j]] + partial


class ModalityLengthGroupedSampler(Sampler):
    def __init__(self, lengths: list[int], batch_size: int, world_size: int, seed: int = 0):
        self.lengths, self.batch_size, self.world_size, self.seed = lengths, batch_size, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_grouped_indices(self.lengths, self.batch_size, self.world_size, generator))
