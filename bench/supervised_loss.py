"""Training step with the loss from supervised positions only vs the LLM's full-logit loss.

Same model, weights and batch; only `LlavaForCausalLM._supervised_loss_ok` differs. The batch is
shaped like visual instruction data: an image, a prompt (masked with IGNORE_INDEX) and a short
supervised answer. The script measures the peak RSS growth of one step of each (supervised first),
checks that both paths give the same loss, then alternates timed steps (forward, backward, AdamW;
median of --steps each).

    python bench/supervised_loss.py          # prints `full/supervised step time: N.NNx` last
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from transformers import CLIPVisionConfig, Qwen2Config

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.model import LlavaConfig, LlavaForCausalLM


def build(args) -> LlavaForCausalLM:
    vision = CLIPVisionConfig(hidden_size=args.vision_hidden, intermediate_size=4 * args.vision_hidden,
                              num_hidden_layers=2, num_attention_heads=4, image_size=args.image_size, patch_size=14)
    text = Qwen2Config(hidden_size=args.hidden, intermediate_size=4 * args.hidden, num_hidden_layers=args.layers,
                       num_attention_heads=8, num_key_value_heads=8, vocab_size=args.vocab, max_position_embeddings=4096)
    torch.manual_seed(0)
    model = LlavaForCausalLM(LlavaConfig(text_config=text, vision_config=vision, mm_projector_type="mlp2x_gelu",
                                         attn_implementation="sdpa"))
    model.train()
    model.vision_tower.requires_grad_(False)
    return model


def batch(args) -> dict:
    torch.manual_seed(1)
    ids = torch.randint(0, args.vocab, (args.batch, args.text_tokens))
    ids[:, 4] = IMAGE_TOKEN_INDEX
    labels = ids.clone()
    labels[:, : args.text_tokens - args.answer_tokens] = IGNORE_INDEX
    return {"input_ids": ids, "labels": labels, "images": torch.randn(args.batch, 3, args.image_size, args.image_size)}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=151936, help="default: Qwen2's vocabulary")
    parser.add_argument("--vision-hidden", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--text-tokens", type=int, default=128)
    parser.add_argument("--answer-tokens", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()

    model, inputs = build(args), batch(args)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step(supervised: bool) -> float:
        model._supervised_loss_ok = supervised
        start = time.perf_counter()
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    # Memory first, supervised before full and before anything else touches the full logits:
    # ru_maxrss only grows, so the first reading is the supervised step's own peak growth (it also
    # pays for AdamW's state, which the full step then already has: the comparison favours full).
    base = peak_rss_mib()
    step(True)
    rss_supervised = peak_rss_mib() - base
    step(False)
    rss_full = peak_rss_mib() - base
    losses = {}
    for name, supervised in (("full", False), ("supervised", True)):
        model._supervised_loss_ok = supervised
        with torch.no_grad():
            losses[name] = model(**inputs).loss.item()
    print(f"same weights, same batch: loss full {losses['full']:.6f} / supervised {losses['supervised']:.6f}")
    if abs(losses["full"] - losses["supervised"]) > 1e-4:
        raise SystemExit("the two paths disagree; the timing would compare different computations")

    times: dict[str, list[float]] = {"full": [], "supervised": []}
    for i in range(args.steps):
        for name in (("full", "supervised") if i % 2 == 0 else ("supervised", "full")):
            times[name].append(step(name == "supervised"))
    median = {name: statistics.median(t) for name, t in times.items()}
    supervised_share = args.answer_tokens / (args.text_tokens - 1 + (args.image_size // 14) ** 2)
    print(f"batch {args.batch}, {args.text_tokens} text tokens ({args.answer_tokens} supervised, "
          f"{supervised_share:.1%} of the merged sequence), vocab {args.vocab}, LLM {args.layers}x{args.hidden}, "
          f"{torch.get_num_threads()} threads, {args.steps} steps each")
    print(f"median step: full {median['full'] * 1000:.0f} ms, supervised {median['supervised'] * 1000:.0f} ms")
    print(f"peak RSS growth over the built model: supervised step {rss_supervised:.0f} MiB, full step {rss_full:.0f} MiB")
    print(f"full/supervised step time: {median['full'] / median['supervised']:.2f}x")


if __name__ == "__main__":
    main()
