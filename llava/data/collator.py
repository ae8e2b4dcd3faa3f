"""Batch collation: right padding, images concatenated in sentinel order, metadata kept aside.

`DataCollatorForSupervisedDataset` makes one row per sample; `DataCollatorForPackedDataset` (for
`--packing`) one row per pack of samples (`llava.data.packing`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from llava.constants import IGNORE_INDEX


def _images_and_metadata(samples: list[dict]) -> dict:
    """`images` (total_images, 3, H, W) in sentinel order (absent without images), and metadata the
    trainer removes before the forward pass: `image_langs`, the `lang` of the sample each image
    belongs to (per-language logging), and `ids`, each sample's data item id (to name the samples of
    a bad step)."""
    batch: dict = {}
    images = [x["images"] for x in samples if x.get("images") is not None]
    if images:
        batch["images"] = torch.cat(images, dim=0)
    batch["image_langs"] = [x.get("lang") for x in samples if x.get("images") is not None for _ in x["images"]]
    batch["ids"] = [x.get("id") for x in samples]
    return batch


def _padded(rows: list[torch.Tensor], labels: list[torch.Tensor], pad_token_id: int) -> dict:
    input_ids = pad_sequence(rows, batch_first=True, padding_value=pad_token_id)
    lengths = torch.tensor([len(row) for row in rows])
    return {
        "input_ids": input_ids,
        "labels": pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX),
        "attention_mask": (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long(),
    }


@dataclass
class DataCollatorForSupervisedDataset:
    """Pads `input_ids` with the pad token and `labels` with IGNORE_INDEX (right side).

    `images` is (total_images, 3, H, W) over the batch, in the order the `<image>` sentinels appear,
    or absent when no sample has an image. `image_langs` (one str or None per image) and `ids` (one
    per sample) are metadata; the trainer removes them before the forward pass.
    """

    pad_token_id: int

    def __call__(self, instances: list[dict]) -> dict:
        batch = _padded([x["input_ids"] for x in instances], [x["labels"] for x in instances], self.pad_token_id)
        return batch | _images_and_metadata(instances)


@dataclass
class DataCollatorForPackedDataset:
    """One row per pack: the pack's samples end to end, then right padding.

    Besides the keys of `DataCollatorForSupervisedDataset` it returns `position_ids` (B, T) that
    restart at 0 at each sample (padding continues the row's last sample), which is how the model
    tells the samples of a row apart. Each sample's first label is IGNORE_INDEX: no token predicts
    the first token of the next sample, exactly as no token precedes a sample in its own row.
    """

    pad_token_id: int

    def __call__(self, packs: list[list[dict]]) -> dict:
        rows, labels = [], []
        for pack in packs:
            rows.append(torch.cat([x["input_ids"] for x in pack]) if pack else torch.tensor([self.pad_token_id]))
            sample_labels = [x["labels"].clone() for x in pack] or [torch.tensor([IGNORE_INDEX])]
            for label in sample_labels:
                label[0] = IGNORE_INDEX
            labels.append(torch.cat(sample_labels))
        batch = _padded(rows, labels, self.pad_token_id)
        width = batch["input_ids"].shape[1]
        batch["position_ids"] = torch.stack([_positions([len(x["input_ids"]) for x in pack], width) for pack in packs])
        return batch | _images_and_metadata([x for pack in packs for x in pack])


def _positions(sample_lengths: list[int], width: int) -> torch.Tensor:
    """(width,) positions restarting at 0 at each sample; the padding after the last continues it."""
    parts = [torch.arange(n) for n in sample_lengths[:-1]]
    last = width - sum(sample_lengths[:-1])
    return torch.cat([*parts, torch.arange(last)])
