"""The sentinel splice (`merge_image_features`) against transformers Llava's placeholder tokens +
`masked_scatter`, on the tiny model (or a larger shape), for one batch.

    python bench/merge_splice.py                 # tiny Qwen2 + CLIP, batch 8
    python bench/merge_splice.py --shape 7b      # 576 visual tokens of width 4096, batch 8

Three timings, each from the text token embeddings onwards (the vision tower and projector are the
same for all and run once, outside the clock):
- splice: our merge from ids with one -200 sentinel per image (embedding lookup, text + image writes,
  labels, attention mask, positions);
- masked_scatter: ids already expanded to N placeholder ids per image (as transformers' processor
  hands them over), embedding lookup and `masked_scatter` of the image features, nothing else;
- expand + masked_scatter: the same from our sentinel ids, with the expansion to placeholders, the
  labels and the attention mask it needs (what switching the format would cost here).
Median of `--iters` runs after `--warmup`, float32 on CPU, `--threads` torch threads.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch.nn.utils.rnn import pad_sequence

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.model.multimodal_merge import merge_image_features
from llava.model.visual_tokens import token_widths
from llava.tiny import build_tiny_assets, build_tiny_llava


def make_batch(batch: int, vocab: int, images_per_row: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) of 40..200 text tokens with `images_per_row` sentinels each, and the mask."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        text = torch.randint(1, vocab, (int(torch.randint(40, 200, (1,), generator=gen)),), generator=gen)
        cut = sorted(torch.randint(0, len(text), (images_per_row,), generator=gen).tolist())
        parts, last = [], 0
        for c in cut:
            parts += [text[last:c], torch.tensor([IMAGE_TOKEN_INDEX])]
            last = c
        rows.append(torch.cat([*parts, text[last:]]))
    ids = pad_sequence(rows, batch_first=True, padding_value=0)
    lengths = torch.tensor([len(r) for r in rows])
    return ids, (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()


def splice(embed, ids, mask, features):
    merged = merge_image_features(ids, embed(ids.clamp(min=0)), features, mask, labels=ids)
    return merged.inputs_embeds


def expand(ids, mask, tokens_per_image, placeholder):
    """Sentinel ids -> ids with `tokens_per_image` placeholders per image, labels and attention mask."""
    widths = token_widths(ids, tokens_per_image, mask)
    swapped = torch.where(ids == IMAGE_TOKEN_INDEX, placeholder, ids)
    rows = [torch.repeat_interleave(r, w) for r, w in zip(swapped, widths)]
    out = pad_sequence(rows, batch_first=True, padding_value=0)
    lengths = widths.sum(dim=1)
    new_mask = (torch.arange(out.shape[1])[None, :] < lengths[:, None]).long()
    labels = torch.where((out == placeholder) | (new_mask == 0), IGNORE_INDEX, out)
    return out, new_mask, labels


def scatter(embed, expanded, features, placeholder):
    embeds = embed(expanded)
    mask = (expanded == placeholder)[..., None].expand_as(embeds)
    return embeds.masked_scatter(mask, features.to(embeds.dtype))


def median_seconds(fn, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["tiny", "7b"], default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images-per-row", type=int, default=1)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.shape == "tiny":
        with tempfile.TemporaryDirectory() as tmp:
            model, _, _ = build_tiny_llava(build_tiny_assets(tmp, seed=args.seed))
        embed = model.get_input_embeddings()
        tokens_per_image = model.num_image_tokens
        pixels = torch.randn(args.batch * args.images_per_row, 3, 32, 32)
        with torch.no_grad():
            features = model.get_image_features(pixels).visual_tokens
    else:
        embed = torch.nn.Embedding(32000, 4096)
        tokens_per_image = 576
        features = torch.randn(args.batch * args.images_per_row, tokens_per_image, 4096)
    vocab = embed.num_embeddings - 1
    placeholder = vocab  # the last id stands for the image placeholder token
    ids, mask = make_batch(args.batch, vocab, args.images_per_row, args.seed)
    expanded, expanded_mask, _ = expand(ids, mask, tokens_per_image, placeholder)

    with torch.no_grad():
        ours, theirs = splice(embed, ids, mask, features), scatter(embed, expanded, features, placeholder)
        keep = expanded_mask.bool()
        assert torch.equal(ours[keep], theirs[keep]), "the two splices disagree"
        t_splice = median_seconds(lambda: splice(embed, ids, mask, features), args.warmup, args.iters)
        t_scatter = median_seconds(lambda: scatter(embed, expanded, features, placeholder), args.warmup, args.iters)
        t_both = median_seconds(
            lambda: scatter(embed, expand(ids, mask, tokens_per_image, placeholder)[0], features, placeholder),
            args.warmup, args.iters,
        )
    print(f"shape {args.shape}: batch {args.batch}, {args.images_per_row} image(s) per row of {tokens_per_image} "
          f"visual tokens, width {embed.embedding_dim}, merged length {expanded.shape[1]}, {args.threads} thread(s)")
    print(f"splice (sentinels)        {t_splice * 1e3:8.3f} ms")
    print(f"masked_scatter (expanded) {t_scatter * 1e3:8.3f} ms   splice / masked_scatter = {t_splice / t_scatter:.2f}")
    print(f"expand + masked_scatter   {t_both * 1e3:8.3f} ms   splice / (expand + masked_scatter) = {t_splice / t_both:.2f}")


if __name__ == "__main__":
    main()
