"""One training step (forward, backward, AdamW) of our LlavaForCausalLM (`mlp2x_gelu`) against
transformers' own `LlavaForConditionalGeneration`, side by side in one run.

Both get the same vision config, LLM config, weights (copied across), tokens and batch; the script
first checks that their losses agree, then alternates timed steps (median of --steps each). Ours
takes one `<image>` sentinel per image and splices N visual tokens in; HF's expects the N image
tokens already in `input_ids`: both see the same sequence. As in visual instruction data, only the
answer is supervised: the last `--answer-fraction` of the text tokens (a quarter by default); the
image and the prompt carry IGNORE_INDEX. Ours runs its default training loss, which projects only
the supervised positions onto the vocabulary; HF's projects every position.

    python bench/train_step.py            # prints `ours/hf step time: N.NNx` last
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import timed_training_step
from transformers import CLIPVisionConfig, LlamaConfig, LlavaForConditionalGeneration
from transformers import LlavaConfig as HFLlavaConfig

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.model import LlavaConfig, LlavaForCausalLM


def configs(args):
    vision = CLIPVisionConfig(hidden_size=args.vision_hidden, intermediate_size=4 * args.vision_hidden,
                              num_hidden_layers=args.vision_layers, num_attention_heads=8,
                              image_size=args.image_size, patch_size=14)
    text = LlamaConfig(hidden_size=args.hidden, intermediate_size=4 * args.hidden, num_hidden_layers=args.layers,
                       num_attention_heads=8, num_key_value_heads=8, vocab_size=args.vocab,
                       max_position_embeddings=4096)
    return vision, text


def build_models(args):
    vision, text = configs(args)
    torch.manual_seed(0)
    ours = LlavaForCausalLM(LlavaConfig(text_config=text, vision_config=vision, mm_projector_type="mlp2x_gelu",
                                        mm_vision_select_layer=-2, mm_vision_select_feature="patch",
                                        attn_implementation="sdpa"))
    num_patches = (args.image_size // 14) ** 2
    hf = LlavaForConditionalGeneration(HFLlavaConfig(
        vision_config=vision, text_config=text, image_token_index=args.vocab - 1, image_seq_length=num_patches,
        vision_feature_layer=-2, vision_feature_select_strategy="default", attn_implementation="sdpa"))
    copy_weights(ours, hf)
    for model in (ours, hf):
        model.train()
    ours.vision_tower.requires_grad_(False)  # stage 2: the vision tower is frozen in both
    hf.model.vision_tower.requires_grad_(False)
    return ours, hf, num_patches


def copy_weights(ours: LlavaForCausalLM, hf: LlavaForConditionalGeneration) -> None:
    """Give HF's model our weights, so the comparison is of code, not of initialisations."""
    state = {}
    for name, tensor in ours.state_dict().items():
        if name.startswith("vision_tower.encoder."):
            state["model.vision_tower." + name.removeprefix("vision_tower.encoder.")] = tensor
        elif name.startswith("mm_projector."):
            layer, param = name.removeprefix("mm_projector.").split(".")
            state[f"model.multi_modal_projector.linear_{1 if layer == '0' else 2}.{param}"] = tensor
        elif name.startswith("language_model.model."):
            state["model.language_model." + name.removeprefix("language_model.model.")] = tensor
        elif name.startswith("language_model.lm_head."):
            state["lm_head." + name.removeprefix("language_model.lm_head.")] = tensor
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weight mapping is incomplete: missing {missing}, unexpected {unexpected}")


def answer_tokens(args) -> int:
    return max(1, round(args.text_tokens * args.answer_fraction))


def batch(args, num_patches):
    """4 prompt tokens, the image, the rest of the prompt, then the answer (the only supervised part)."""
    torch.manual_seed(1)
    text = torch.randint(0, args.vocab - 2, (args.batch, args.text_tokens))
    pixels = torch.randn(args.batch, 3, args.image_size, args.image_size)
    ours_ids = torch.cat([text[:, :4], torch.full((args.batch, 1), IMAGE_TOKEN_INDEX), text[:, 4:]], dim=1)
    hf_ids = torch.cat([text[:, :4], torch.full((args.batch, num_patches), args.vocab - 1), text[:, 4:]], dim=1)
    answer = answer_tokens(args)
    hf_labels = torch.full_like(hf_ids, IGNORE_INDEX)
    hf_labels[:, -answer:] = hf_ids[:, -answer:]
    ours_labels = torch.full_like(ours_ids, IGNORE_INDEX)
    ours_labels[:, -answer:] = ours_ids[:, -answer:]
    return (dict(input_ids=ours_ids, labels=ours_labels, images=pixels),
            dict(input_ids=hf_ids, labels=hf_labels, pixel_values=pixels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--vision-hidden", type=int, default=256)
    parser.add_argument("--vision-layers", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--text-tokens", type=int, default=96)
    parser.add_argument("--answer-fraction", type=float, default=0.25, help="supervised share of the text tokens")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    ours, hf, num_patches = build_models(args)
    ours_inputs, hf_inputs = batch(args, num_patches)
    with torch.no_grad():
        loss_ours, loss_hf = ours(**ours_inputs).loss.item(), hf(**hf_inputs).loss.item()
    print(f"same weights, same batch: loss ours {loss_ours:.6f} / hf {loss_hf:.6f}")
    if abs(loss_ours - loss_hf) > 1e-4:
        raise SystemExit("the two models disagree; the timing would compare different computations")
    steps = {"ours": timed_training_step(ours), "hf": timed_training_step(hf)}
    inputs = {"ours": ours_inputs, "hf": hf_inputs}
    for name, step in steps.items():
        step(inputs[name])  # warm-up
    times: dict[str, list[float]] = {"ours": [], "hf": []}
    for i in range(args.steps):
        for name in (("ours", "hf") if i % 2 == 0 else ("hf", "ours")):  # alternate to share the noise
            times[name].append(steps[name](inputs[name]))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"batch {args.batch} x {num_patches + args.text_tokens} tokens ({answer_tokens(args)} supervised per row), "
          f"LLM {args.layers}x{args.hidden}, "
          f"CLIP {args.vision_layers}x{args.vision_hidden}, {args.steps} steps each, {torch.get_num_threads()} threads")
    print(f"median step: ours {median['ours'] * 1000:.1f} ms, hf {median['hf'] * 1000:.1f} ms")
    print(f"ours/hf step time: {median['ours'] / median['hf']:.2f}x")


if __name__ == "__main__":
    main()
