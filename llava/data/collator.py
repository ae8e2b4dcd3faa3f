"""Batch collation: right padding, images concatenated in sentinel order, metadata kept aside."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llava.constants import IGNORE_INDEX


@dataclass
class DataCollatorForSupervisedDataset:
    """Pads `input_ids` with the pad token and `labels` with IGNORE_INDEX (right side).

    `images` is (total_images, 3, H, W) over the batch, in the order the `<image>` sentinels appear,
    or absent when no sample has an image. `langs` (list of str or None) and `ids` (each sample's
    data item id, to name the samples of a bad step) are metadata; the trainer removes them before
    the forward pass.
    """

    pad_token_id: int

    def __call__(self, instances: list[dict]) -> dict:
        input_ids = torch.nn.utils.rnn.pad_sequence(
            [x["input_ids"] for x in instances], batch_first=True, padding_value=self.pad_token_id
        )
        labels = torch.nn.utils.rnn.pad_sequence(
            [x["labels"] for x in instances], batch_first=True, padding_value=IGNORE_INDEX
        )
        lengths = torch.tensor([len(x["input_ids"]) for x in instances])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        images = [x["images"] for x in instances if x.get("images") is not None]
        if images:
            batch["images"] = torch.cat(images, dim=0)
        batch["langs"] = [x.get("lang") for x in instances]
        batch["ids"] = [x.get("id") for x in instances]
        return batch
