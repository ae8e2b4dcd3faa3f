"""Training throughput with sequence packing (`--packing True`) against padded batches, side by side.

Same model (two copies of one initialisation, each with its own AdamW), same samples, one run. The
model is the quickstart's stage 2 at its tiny shape: the LLM's sizes and vocabulary are read from the
quickstart's pretrained LLM (`playground/quickstart/pretrained_llm/config.json`: LLaMA, 4 layers of
width 128, the toy tokenizer's vocabulary, tied embeddings; `--llm-config` reads another); CLIP 64x64
with 8-pixel patches, `cls_patch` (65 visual tokens per image), `parrot_moe`; the vision tower is
frozen, projector and LLM train.

The samples imitate the length mix of LLaVA-1.5's 665K instruction data: mostly one-turn questions
about an image, a tail of 5-10-turn conversations about an image, and 6% text-only conversations
(ShareGPT) with long answers; the script prints the mix it drew. Token ids are random: throughput
does not depend on them. Rows are `--max-length` long (the quickstart's `--model_max_length 512`).

Three arms go through the same samples:
- unpacked: batches of `--batch` samples in random order (the trainer's default sampler);
- length-grouped: the same, ordered as `--train_sampling_strategy group_by_length` orders them
  (similar lengths share a batch: the least padding without packing);
- packed: `--packing True` rows (`llava.data.packing`), as many rows per step as hold `--batch`
  samples on average, so both take about as many optimizer steps.
Each round runs one step of every arm in turn (the order rotates) until all have seen every sample;
a round's throughput is its supervised tokens over its time, and the figures are medians over rounds.

    python bench/packing.py         # last line: `packed/unpacked supervised tokens per second: N.NNx`
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
from pathlib import Path

import torch
from timing import timed_training_step
from transformers import AutoConfig, CLIPVisionConfig, PretrainedConfig
from transformers.trainer_pt_utils import get_length_grouped_indices

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.data.collator import DataCollatorForPackedDataset, DataCollatorForSupervisedDataset
from llava.data.packing import plan_packs
from llava.model import LlavaConfig, LlavaForCausalLM
from llava.model.visual_tokens import merged_length
from llava.tiny.models import TinySizes
from llava.train.trainer import real_token_counts

QUICKSTART_LLM = Path(__file__).resolve().parents[1] / "playground" / "quickstart" / "pretrained_llm"
PAD = 0
SYSTEM_TOKENS = 20  # "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
TURN_OVERHEAD = 5  # "<|im_start|>user\n" ... "<|im_end|>\n" around each message


def build_model(text: PretrainedConfig, sizes: TinySizes) -> LlavaForCausalLM:
    vision = CLIPVisionConfig(hidden_size=sizes.vision_hidden_size, intermediate_size=sizes.vision_intermediate_size,
                              num_hidden_layers=sizes.vision_layers, num_attention_heads=sizes.vision_heads,
                              image_size=sizes.image_size, patch_size=sizes.patch_size)
    torch.manual_seed(0)
    model = LlavaForCausalLM(LlavaConfig(text_config=text, vision_config=vision, mm_projector_type="parrot_moe",
                                         mm_vision_select_layer=-1, mm_vision_select_feature="cls_patch",
                                         attn_implementation="sdpa"))
    model.train()
    model.vision_tower.requires_grad_(False)
    return model


def draw_turns(kind: str, rng: random.Random) -> list[tuple[int, int]]:
    """(question tokens, answer tokens) per turn of one conversation of `kind`."""
    if kind == "one-turn":
        style = rng.random()
        if style < 0.70:  # VQAv2 / GQA / OCR-VQA: "... Answer the question using a single word or phrase."
            return [(rng.randint(10, 25) + 11, rng.randint(1, 5))]
        if style < 0.90:  # captions, region descriptions
            return [(rng.randint(8, 20), rng.randint(10, 30))]
        return [(rng.randint(10, 30), rng.randint(60, 150))]  # LLaVA-Instruct detail / reasoning
    if kind == "multi-turn":
        turns = rng.randint(5, 10)
        if rng.random() < 0.5:  # VQA questions about one image, grouped into one conversation (as in 665K)
            return [(rng.randint(10, 25) + 11, rng.randint(1, 5)) for _ in range(turns)]
        return [(rng.randint(8, 25), rng.randint(10, 50)) for _ in range(turns)]  # LLaVA-Instruct conversations
    return [(rng.randint(10, 60), rng.randint(30, 150)) for _ in range(rng.randint(1, 4))]  # ShareGPT


def make_sample(kind: str, rng: random.Random, gen: torch.Generator, image_tokens: int, image_size: int,
                max_length: int, vocab_size: int) -> dict:
    """Token ids shaped like a ChatML conversation; only the answers are supervised. Truncated as the
    dataset truncates (the image tokens count), keeping at least one answer token."""
    has_image = kind != "text-only"
    ids, labels = [1] * SYSTEM_TOKENS, [IGNORE_INDEX] * SYSTEM_TOKENS
    for turn, (question, answer) in enumerate(draw_turns(kind, rng)):
        prompt = [2] * (question + TURN_OVERHEAD)
        if turn == 0 and has_image:
            prompt[TURN_OVERHEAD - 2] = IMAGE_TOKEN_INDEX
        ids += prompt
        labels += [IGNORE_INDEX] * len(prompt)
        ids += [3] * (answer + TURN_OVERHEAD - 3)
        labels += [3] * (answer + TURN_OVERHEAD - 3)
    budget = max_length - (image_tokens - 1 if has_image else 0)
    ids, labels = ids[:budget], labels[:budget]
    ids_t = torch.tensor(ids)
    ids_t[ids_t > 0] = torch.randint(5, vocab_size, (int((ids_t > 0).sum()),), generator=gen)
    labels_t = torch.where(torch.tensor(labels) == IGNORE_INDEX, IGNORE_INDEX, ids_t)
    images = torch.randn(1, 3, image_size, image_size, generator=gen) if has_image else None
    return {"input_ids": ids_t, "labels": labels_t, "images": images, "lang": None}


def make_mix(args, image_tokens: int, image_size: int, vocab_size: int) -> tuple[list[dict], list[int], list[str]]:
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    kinds = rng.choices(["one-turn", "multi-turn", "text-only"], weights=[0.80, 0.14, 0.06], k=args.samples)
    samples = [make_sample(k, rng, gen, image_tokens, image_size, args.max_length, vocab_size) for k in kinds]
    lengths = [int(merged_length(s["input_ids"], image_tokens)) for s in samples]
    return samples, lengths, kinds


def print_mix(samples: list[dict], lengths: list[int], kinds: list[str]) -> None:
    print(f"length mix ({len(samples)} samples, LLM positions incl. visual tokens):")
    for kind in ("one-turn", "multi-turn", "text-only"):
        chosen = sorted(n for n, k in zip(lengths, kinds) if k == kind)
        if chosen:
            print(f"  {kind:10s} {len(chosen) / len(samples):6.1%}  median {statistics.median(chosen):5.0f}  "
                  f"min {chosen[0]:4d}  max {chosen[-1]:4d}")
    text = sum(int(((s["input_ids"] != IMAGE_TOKEN_INDEX)).sum()) for s in samples)
    supervised = sum(int((s["labels"] != IGNORE_INDEX).sum()) for s in samples)
    print(f"  mean length {statistics.mean(lengths):.0f}; answers are {supervised / text:.0%} of the text tokens")


def batches_of(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32, help="samples per step unpacked (the quickstart's 32)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--llm-config", type=Path, default=QUICKSTART_LLM, help="folder whose config.json gives the LLM's shape")
    args = parser.parse_args()

    sizes = TinySizes(vision_hidden_size=64, vision_layers=2, image_size=64, patch_size=8)  # the quickstart tower
    text = AutoConfig.from_pretrained(args.llm_config)
    print(f"LLM: {text.model_type}, {text.num_hidden_layers} layers of width {text.hidden_size}, vocabulary {text.vocab_size} "
          f"(from {args.llm_config})")
    model = build_model(text, sizes)
    image_tokens = model.num_image_tokens
    samples, lengths, kinds = make_mix(args, image_tokens, sizes.image_size, text.vocab_size)
    print_mix(samples, lengths, kinds)

    rows = max(1, round(args.batch * statistics.mean(lengths) / args.max_length))
    packs = plan_packs(lengths, args.max_length, seed=args.seed, rows_multiple=rows)
    random.Random(args.seed).shuffle(packs)  # the trainer's sampler shuffles the rows of an epoch
    order = list(range(len(samples)))
    random.Random(args.seed).shuffle(order)
    grouped = get_length_grouped_indices(lengths, args.batch, mega_batch_mult=min(50, len(samples) // args.batch),
                                         generator=torch.Generator().manual_seed(args.seed))
    unpack, pack = DataCollatorForSupervisedDataset(PAD), DataCollatorForPackedDataset(PAD)
    arms = {
        "unpacked": [unpack([samples[i] for i in b]) for b in batches_of(order, args.batch)],
        "length-grouped": [unpack([samples[i] for i in b]) for b in batches_of(grouped, args.batch)],
        "packed": [pack([[samples[i] for i in p] for p in b]) for b in batches_of(packs, rows)],
    }
    for batch in (b for batches in arms.values() for b in batches):
        batch.pop("image_langs")  # metadata the trainer removes before the forward pass
    supervised = sum(int((s["labels"][1:] != IGNORE_INDEX).sum()) for s in samples)
    for name, batches in arms.items():
        real, total = map(sum, zip(*(real_token_counts(b["input_ids"], b["attention_mask"], image_tokens, None)
                                     for b in batches)))
        shape = f"{rows} rows of <= {args.max_length}" if name == "packed" else f"{args.batch} samples"
        print(f"{name:14s} {len(batches):3d} steps of {shape}; real (non-pad) tokens {real / total:.1%}")

    steps = {name: timed_training_step(copy.deepcopy(model)) for name in arms}
    for name, batches in arms.items():
        steps[name](batches[0])  # warm-up
    throughput: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for round_index in range(args.rounds):
        elapsed = dict.fromkeys(names, 0.0)
        for i in range(max(len(b) for b in arms.values())):
            turn = names[(i + round_index) % len(names):] + names[: (i + round_index) % len(names)]
            for name in turn:
                if i < len(arms[name]):
                    elapsed[name] += steps[name](arms[name][i])
        for name in names:
            throughput[name].append(supervised / elapsed[name])
        print(f"round {round_index + 1}: " + ", ".join(f"{n} {elapsed[n]:.1f} s" for n in names))
    median = {name: statistics.median(values) for name, values in throughput.items()}
    ratios = {name: statistics.median(p / u for p, u in zip(throughput["packed"], throughput[name])) for name in names}
    print(f"{torch.get_num_threads()} threads; median supervised tokens/s: "
          + ", ".join(f"{n} {median[n]:.0f}" for n in names))
    print(f"packed/length-grouped supervised tokens per second: {ratios['length-grouped']:.2f}x")
    print(f"packed/unpacked supervised tokens per second: {ratios['unpacked']:.2f}x")


if __name__ == "__main__":
    main()
