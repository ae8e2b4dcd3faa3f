"""The order stage 1 and stage 2 read their items in, written into the training files.

- Multi-turn conversations. Items about the same image in the same language are merged into one
  LLaVA conversation of up to `max_turns` question/answer turns (the layout of LLaVA's own
  instruction data). The image and the chat preamble are then encoded once for several answers,
  which on a CPU makes a sample several times cheaper per supervised answer.
- Order. Items are written in length-homogeneous batches (LLaVA's "megabatch" idea), so a batch
  carries little padding, and trained with `--train_sampling_strategy sequential`; epochs are
  written as reshuffled copies, so every epoch sees a new order.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

IMAGE_MARKER = "<image>"
MEGABATCH_FACTOR = 16  # batches per megabatch: items are sorted by length inside one megabatch


def merge_turns(items: list[dict], max_turns: int) -> list[dict]:
    """Merge single-turn items that share `image` and `lang` into conversations of <= `max_turns` turns.

    The first human turn keeps its `<image>` marker, later ones lose it (one image per conversation).
    Items keep their order inside a conversation; a conversation takes the id of its first item.
    """
    if max_turns < 1:
        raise ValueError(f"--max-turns must be at least 1, got {max_turns}")
    groups: dict[tuple[str, str], list[dict]] = {}
    for item in items:
        groups.setdefault((item.get("image", ""), item.get("lang", "")), []).append(item)
    merged = []
    for group in groups.values():
        for start in range(0, len(group), max_turns):
            chunk = group[start : start + max_turns]
            turns = [dict(turn) for turn in chunk[0]["conversations"]]
            for item in chunk[1:]:
                human, *rest = item["conversations"]
                question = human["value"].replace(IMAGE_MARKER + "\n", "").replace(IMAGE_MARKER, "")
                turns += [{**human, "value": question}, *(dict(turn) for turn in rest)]
            merged.append({**chunk[0], "conversations": turns})
    return merged


def length_bucketed_order(lengths: list[int], batch_size: int, rng: random.Random) -> list[int]:
    """A permutation of `range(len(lengths))` whose consecutive `batch_size` slices hold similar lengths.

    Shuffle, cut into megabatches of `MEGABATCH_FACTOR` batches, sort each megabatch by length, cut
    it into batches, and shuffle the full batches: random like a shuffle, with little padding per
    batch. A short last batch goes last, so it cannot shift every later batch off its boundary.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * MEGABATCH_FACTOR
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    full = [batch for batch in batches if len(batch) == batch_size]
    rng.shuffle(full)
    short = [i for batch in batches if len(batch) != batch_size for i in batch]
    return [i for batch in full for i in batch] + short


def token_lengths(items: list[dict], tokenizer) -> list[int]:
    """Text tokens of each item's turns (the image tokens are the same for every item)."""
    texts = ["\n".join(turn["value"] for turn in item["conversations"]) for item in items]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def write_training_order(
    source: Path, target: Path, tokenizer, batch_size: int, epochs: float, seed: int, max_turns: int = 1
) -> int:
    """Write `round(epochs * N)` conversations of `source` to `target` in length-bucketed batches.

    N counts conversations after merging up to `max_turns` items per (image, language). Each epoch
    is its own reshuffled pass. Returns the number of conversations written.
    """
    items = merge_turns(json.loads(source.read_text(encoding="utf-8")), max_turns)
    if not items:
        raise ValueError(f"{source} holds no items; build the data with more --num-stage1/--num-stage2")
    lengths = token_lengths(items, tokenizer)
    total = max(1, round(epochs * len(items)))
    rng = random.Random(f"{seed}/{source.name}")
    ordered: list[dict] = []
    for _ in range(math.ceil(total / len(items))):
        ordered += [items[i] for i in length_bucketed_order(lengths, batch_size, rng)]
    target.write_text(json.dumps(ordered[:total], ensure_ascii=False), encoding="utf-8")
    return total
