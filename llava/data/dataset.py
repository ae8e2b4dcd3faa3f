"""Lazy LLaVA dataset: JSON/JSONL items -> tokenized samples with their images.

Structural problems (no gpt turn, unknown `from`, `<image>` without an image, more markers than
images, missing image file) are found when the dataset is built; corrupt images and samples left
with no supervised token are found when the item is first read. Either way the item is logged once
with its id and reason, recorded in `skipped_samples.jsonl` beside the run, and never trained on;
`--strict_data` turns the first one into an error instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from llava.conversation import Conversation
from llava.data.mixture import load_data
from llava.data.preprocess import (
    BadSample,
    TokenizedSample,
    conversation_pieces,
    tokenize_conversations,
    tokenize_pieces,
)
from llava.image_limits import ImageShapeError, check_image_shape
from llava.mm_utils import process_images
from llava.model.visual_tokens import image_positions, merged_length, text_budget

logger = logging.getLogger(__name__)


def load_items(data_path: str, seed: int = 0) -> list[dict]:
    """Items of a YAML mixture, or of one or more comma-separated `.json` (a list) or `.jsonl` files."""
    return load_data(data_path, seed=seed).items


def item_images(item: dict) -> list[str]:
    image = item.get("image")
    if image is None:
        return []
    return [image] if isinstance(image, str) else list(image)


class SkipLog:
    """Counts skipped items and appends them to a JSONL file shared by all ranks and workers."""

    def __init__(self, path: str | None = None, strict: bool = False):
        self.path = path
        self.strict = strict
        self.counts: Counter[str] = Counter()

    def record(self, item_id, reason: str) -> None:
        if self.strict:
            raise BadSample(f"bad data item id={item_id}: {reason} (remove --strict_data to skip such items)")
        logger.warning("skipping data item id=%s: %s", item_id, reason)
        self.counts[reason.split(":")[0]] += 1
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"id": item_id, "reason": reason}, ensure_ascii=False) + "\n")

    def summary(self) -> Counter[str]:
        """Counts per reason from the shared file when there is one (covers workers and ranks)."""
        if not self.path or not os.path.exists(self.path):
            return self.counts
        ids: dict[str, str] = {}
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                ids[str(row["id"])] = row["reason"].split(":")[0]
        return Counter(ids.values())


@dataclass
class DataConfig:
    template: Conversation
    image_folder: str | None = None
    image_processor: object | None = None
    image_aspect_ratio: str = "square"
    model_max_length: int = 512  # training's --model_max_length default (a test keeps the two equal)
    num_image_tokens: int = 0
    mm_use_im_start_end: bool = False
    seed: int = 0  # mixture sampling (random:N, fraction:F)


class LazySupervisedDataset(Dataset):
    """Tokenizes lazily; items keep an optional `lang` for per-language logging."""

    def __init__(self, data_path: str, tokenizer, config: DataConfig, skip_log: SkipLog | None = None):
        self.tokenizer = tokenizer
        self.config = config
        self.skip_log = skip_log or SkipLog()
        loaded = load_data(data_path, seed=config.seed)
        self.composition = loaded.composition
        logger.info("data composition (--seed %d):\n%s", config.seed, loaded.table())
        items = loaded.items
        self.items = [item for index, item in enumerate(items) if self._validate(index, item)]
        self._bad: set[int] = set()
        if not self.items:
            raise ValueError(f"--data_path {data_path}: no usable items ({len(items)} read, all skipped)")
        logger.info("loaded %d items from %s (%d skipped)", len(self.items), data_path, len(items) - len(self.items))

    def _validate(self, index: int, item: dict) -> bool:
        item_id = item.get("id", f"#{index}") if isinstance(item, dict) else f"#{index}"
        try:
            self._check_structure(item)
        except BadSample as err:
            self.skip_log.record(item_id, str(err))
            return False
        return True

    def _check_structure(self, item: dict) -> None:
        turns = item.get("conversations") if isinstance(item, dict) else None
        if not isinstance(turns, list) or not turns:
            raise BadSample("no 'conversations' list")
        conversation_pieces(turns, self.config.template)  # raises on unknown roles / no gpt turn
        markers = sum(str(t.get("value", "")).count(DEFAULT_IMAGE_TOKEN) for t in turns)
        images = item_images(item)
        if markers and not images:
            raise BadSample("'<image>' in an item that has no image")
        if markers > len(images):
            raise BadSample(f"more '<image>' markers ({markers}) than images ({len(images)})")
        if images and self._image_folder(item) is None:
            raise BadSample("item has an image but no --image_folder was given")
        for image in images:
            if not os.path.isfile(os.path.join(self._image_folder(item), image)):
                raise BadSample(f"missing image file: {Path(self._image_folder(item), image)}")

    def _image_folder(self, item: dict) -> str | None:
        """The item's own folder (a mixture source's `image_folder`), else --image_folder."""
        return item.get("image_folder") or self.config.image_folder

    def __len__(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> list[int]:
        """Approximate token lengths, negative for text-only items (for `--group_by_modality_length`)."""
        out = []
        for item in self.items:
            words = sum(len(str(t.get("value", "")).split()) for t in item["conversations"])
            has_image = bool(item_images(item))
            out.append(words + image_positions(1, self.config.num_image_tokens) if has_image else -words)
        return out

    def _load_image(self, folder: str, relative: str) -> Image.Image:
        path = os.path.join(folder, relative)
        try:
            with Image.open(path) as img:
                check_image_shape(img.size, pads_to_square=self.config.image_aspect_ratio == "pad")
                return img.convert("RGB")
        except ImageShapeError as err:
            raise BadSample(f"image {path} {err}") from err
        except (UnidentifiedImageError, OSError) as err:
            raise BadSample(f"corrupt image: {path} ({err})") from err

    def _pieces(self, item: dict) -> tuple[list, list[str], int]:
        """The item's rendered template pieces, its images and its token budget."""
        turns = [dict(t) for t in item["conversations"]]
        images = item_images(item)
        if images and not any(DEFAULT_IMAGE_TOKEN in t["value"] for t in turns):
            turns[0]["value"] = DEFAULT_IMAGE_TOKEN + "\n" + turns[0]["value"]  # upstream: image goes first
        pieces = conversation_pieces(turns, self.config.template, self.config.mm_use_im_start_end)
        return pieces, images, text_budget(self.config.model_max_length, len(images), self.config.num_image_tokens)

    def _check(self, sample: TokenizedSample, images: list[str]) -> TokenizedSample:
        if sample.input_ids.count(IMAGE_TOKEN_INDEX) != len(images):
            raise BadSample(f"truncated inside an image: --model_max_length {self.config.model_max_length} is too short")
        if sample.num_supervised == 0:
            raise BadSample("no supervised tokens left after truncation/masking")
        return sample

    def _tokenize(self, item: dict) -> tuple[TokenizedSample, list[str]]:
        """The item's tokens (sentinels for images, truncated to the length budget) and its images."""
        pieces, images, budget = self._pieces(item)
        return self._check(tokenize_pieces(pieces, self.tokenizer, max_length=budget), images), images

    def _build(self, item: dict) -> dict:
        sample, images = self._tokenize(item)
        pixel_values = None
        if images:
            pil = [self._load_image(self._image_folder(item), image) for image in images]
            pixel_values = process_images(pil, self.config.image_processor, self.config)
        return {
            "input_ids": torch.tensor(sample.input_ids, dtype=torch.long),
            "labels": torch.tensor(sample.labels, dtype=torch.long),
            "images": pixel_values,
            "lang": item.get("lang"),
        }

    def _record_bad(self, index: int, err: BadSample) -> None:
        self._bad.add(index)
        self.skip_log.record(self.items[index].get("id", f"#{index}"), str(err))

    def sequence_lengths(self, show_progress: bool = True, chunk: int = 1024) -> list[int | None]:
        """Exact LLM sequence length of every item (text tokens + `num_image_tokens` per image), for
        packing; None for items that cannot be trained on (recorded in the skip log). Tokenizes the
        items `chunk` at a time (no images are read); the tokens are those `dataset[i]` builds."""
        lengths: dict[int, int] = {}
        for start in tqdm(range(0, len(self.items), chunk), desc="measuring sample lengths", disable=not show_progress):
            rendered = {}
            for index in range(start, min(start + chunk, len(self.items))):
                try:
                    rendered[index] = self._pieces(self.items[index])
                except BadSample as err:
                    self._record_bad(index, err)
            pieces, images, budgets = zip(*rendered.values()) if rendered else ((), (), ())
            for index, sample, item_images_ in zip(
                rendered, tokenize_conversations(list(pieces), self.tokenizer, list(budgets)), images
            ):
                try:
                    self._check(sample, item_images_)
                except BadSample as err:
                    self._record_bad(index, err)
                    continue
                lengths[index] = merged_length(sample.input_ids, self.config.num_image_tokens)
        return [lengths.get(index) for index in range(len(self.items))]

    def sample(self, index: int) -> dict | None:
        """Item `index` built, or None (recorded in the skip log) when it cannot be trained on.

        Unlike `dataset[index]` it never substitutes another item: a packed row was filled for this one.
        """
        if index in self._bad:
            return None
        item = self.items[index]
        try:
            return {**self._build(item), "id": item.get("id", f"#{index}")}
        except BadSample as err:
            self._record_bad(index, err)
            return None

    def __getitem__(self, index: int) -> dict:
        # A bad item is replaced by the next good one, so batches keep their size.
        for attempt in range(len(self.items)):
            built = self.sample((index + attempt) % len(self.items))
            if built is not None:
                return built
        raise RuntimeError("every data item was skipped; see the warnings above")


