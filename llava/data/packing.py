"""Sequence packing (`--packing True`): whole samples laid end to end in rows of `model_max_length`.

Which samples share a row is decided once per run, before training, by a length-aware bin packer:
the items are shuffled with the run's seed (or kept in file order under `--train_sampling_strategy
sequential`), and each look-ahead window of `PACKING_WINDOW` consecutive items is packed by
first-fit decreasing. Lengths are exact LLM lengths: text tokens plus, per image, the visual tokens
the projector emits (`LlavaForCausalLM.num_image_tokens`). No sample is dropped or repeated: the
number of rows is then made a multiple of the rows one step takes over all processes (by halving the
packs that hold the most samples), so the distributed sampler never pads an epoch with repeated rows. Each epoch
shuffles the order of the rows, as the trainer's sampler shuffles samples without packing.

`DataCollatorForPackedDataset` (llava.data.collator) lays each pack out as one row, and
`LlavaForCausalLM` keeps the samples of a row apart (block-causal attention, per-sample positions and
text guidance).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from llava.data.dataset import LazySupervisedDataset, item_images

logger = logging.getLogger(__name__)

PACKING_WINDOW = 1000  # items per look-ahead window of the bin packer


def first_fit_decreasing(indices: Sequence[int], lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of total length <= capacity holding every index: longest first, each into the first bin
    with room (ties keep the order of `indices`). Bins are returned in the order they were opened."""
    bins: list[list[int]] = []
    free = np.zeros(len(indices), dtype=np.int64)
    for index in sorted(indices, key=lambda i: -lengths[i]):
        room = free[: len(bins)] >= lengths[index]
        slot = int(room.argmax()) if room.any() else len(bins)
        if slot == len(bins):
            bins.append([])
            free[slot] = capacity
        bins[slot].append(index)
        free[slot] -= lengths[index]
    return bins


def split_to_multiple(packs: list[list[int]], multiple: int) -> list[list[int]]:
    """Split the packs holding the most samples until the count is a multiple of `multiple` (each
    split halves one pack, in place, so order is kept). Stops early when every pack holds one sample."""
    packs = [list(p) for p in packs]
    while len(packs) % multiple:
        fullest = max(range(len(packs)), key=lambda i: len(packs[i]))
        if len(packs[fullest]) < 2:
            logger.warning(
                "packing: %d rows of one sample each cannot be split into a multiple of %d rows; the last "
                "step repeats some rows", len(packs), multiple,
            )
            break
        half = len(packs[fullest]) // 2
        packs[fullest : fullest + 1] = [packs[fullest][:half], packs[fullest][half:]]
    return packs


def plan_packs(
    lengths: Sequence[int | None],
    capacity: int,
    *,
    seed: int,
    shuffle: bool = True,
    window: int = PACKING_WINDOW,
    rows_multiple: int = 1,
    groups: Sequence[int] | None = None,
) -> list[list[int]]:
    """Item indices per row. `lengths[i]` is item i's LLM length (None: skip the item); `groups[i]`,
    when given, keeps items of different groups (modalities) out of each other's rows.

    Deterministic for `seed`; every item with a length is in exactly one pack.
    """
    too_long = [i for i, n in enumerate(lengths) if n is not None and n > capacity]
    if too_long:
        raise ValueError(
            f"packing: item {too_long[0]} is {lengths[too_long[0]]} tokens, longer than a row "
            f"(--model_max_length {capacity}); the dataset should have truncated it"
        )
    order = [i for i, n in enumerate(lengths) if n is not None]
    if shuffle:
        random.Random(seed).shuffle(order)
    group_of = groups if groups is not None else [0] * len(lengths)
    packs: list[list[int]] = []
    for group in sorted({group_of[i] for i in order}):
        members = [i for i in order if group_of[i] == group]
        for start in range(0, len(members), window):
            packs += first_fit_decreasing(members[start : start + window], lengths, capacity)
    return split_to_multiple(packs, rows_multiple)


class PackedDataset(Dataset):
    """The rows of a packed epoch: item i is the list of samples (dataset items) packed into row i.

    `rows_multiple`: rows one step takes over all processes (per-device batch x world size).
    `group_by_modality`: image and text-only samples are packed into separate rows, so the modality
    grouped sampler can keep every batch to one modality (`lengths` is negative for text-only rows).
    """

    def __init__(
        self,
        dataset: LazySupervisedDataset,
        capacity: int,
        *,
        seed: int,
        shuffle: bool = True,
        rows_multiple: int = 1,
        group_by_modality: bool = False,
        show_progress: bool = True,
    ):
        self.dataset = dataset
        self.item_lengths = dataset.sequence_lengths(show_progress=show_progress)
        self.has_image = [bool(item_images(item)) for item in dataset.items]
        self.packs = plan_packs(
            self.item_lengths, capacity, seed=seed, shuffle=shuffle, rows_multiple=rows_multiple,
            groups=self.has_image if group_by_modality else None,
        )
        packed = sum(self.pack_length(i) for i in range(len(self.packs)))
        logger.info(
            "packing: %d samples into %d rows of up to %d tokens (%.1f%% of row positions hold sample tokens)",
            sum(len(p) for p in self.packs), len(self.packs), capacity,
            100 * packed / max(1, len(self.packs) * capacity),
        )

    def pack_length(self, index: int) -> int:
        return sum(self.item_lengths[i] for i in self.packs[index])

    @property
    def lengths(self) -> list[int]:
        """Row lengths, negative for text-only rows (for `--group_by_modality_length`)."""
        return [
            self.pack_length(i) if any(self.has_image[j] for j in pack) else -self.pack_length(i)
            for i, pack in enumerate(self.packs)
        ]

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, index: int) -> list[dict]:
        # An item found bad only now (a corrupt image) leaves its row shorter; nothing replaces it.
        samples = (self.dataset.sample(i) for i in self.packs[index])
        return [sample for sample in samples if sample is not None]
