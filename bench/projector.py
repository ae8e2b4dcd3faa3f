"""Cost of the plugin projectors (parrot_moe, pargo, parrot_moe on pargo) against LLaVA's mlp2x_gelu,
side by side in one run.

    python bench/projector.py            # scaled-down 7B shapes: B=16, N=577, D=C=I=1024, E=6;
                                         # pargo at the paper's 288 partial + 16 global queries
    python bench/projector.py --quick    # small shapes, seconds

Per variant: the LLM positions one image takes (`num_output_tokens`), the projector's forward +
backward time, its memory, and, for mlp2x_gelu against pargo, one training step of projector + a
tiny LLM (`--llm-layers` decoder layers of width C; forward, backward and AdamW over the visual
tokens followed by T text tokens, loss on the text), where the shorter sequence pays off.

Time: median wall clock of `--iters` forward+backward steps after `--warmup` steps, float32 on CPU,
`--threads` torch threads (default 1: with more, OpenMP barriers make timings swing by several x
when other processes share the cores). The variants take turns within each iteration. Memory, two honest figures per variant, each measured in a fresh
subprocess so the variants do not share an allocator:
- peak RSS increase: the peak resident set size (VmHWM, reset just before) during one
  forward+backward minus the resident set size just before it (model and inputs excluded;
  gradients, activations and temporaries included);
- saved for backward: bytes of the distinct tensors autograd keeps for the backward pass (via
  saved_tensors_hooks), the activation memory a training step holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import pargo  # noqa: F401  (registers the pargo projector type)
import parrot_moe  # noqa: F401  (registers the parrot_moe projector type)
from llava.constants import IGNORE_INDEX
from llava.model.multimodal_projector.builder import build_vision_projector

# pargo: the release's 288 partial (windows of 1x2 patches) + 16 global queries on the 24x24 grid,
# and a bert-small-sized Q-Former (the flag defaults); QUICK keeps windows of 1x2 on a 12x12 grid.
FULL = dict(batch=16, patches=576, vision=1024, hidden=1024, experts=6, text=64, partial=288, glob=16)
QUICK = dict(batch=4, patches=144, vision=256, hidden=256, experts=6, text=32, partial=72, glob=8)
VARIANTS = {
    "mlp2x_gelu": dict(mm_projector_type="mlp2x_gelu"),
    "parrot_moe dense": dict(mm_projector_type="parrot_moe"),
    "parrot_moe top_k=1": dict(mm_projector_type="parrot_moe", moe_top_k=1),
    "pargo": dict(mm_projector_type="pargo"),
    "parrot_moe on pargo": dict(mm_projector_type="parrot_moe", moe_base_projector="pargo"),
}
LLM_STEP_VARIANTS = ("mlp2x_gelu", "pargo")


def build(variant: str, shapes: dict) -> tuple[torch.nn.Module, dict]:
    """The projector and one batch of inputs: image (B, 1+N, D), text (B, T, C), mask (B, T)."""
    torch.manual_seed(0)
    config = SimpleNamespace(
        mm_hidden_size=shapes["vision"],
        hidden_size=shapes["hidden"],
        mm_vision_select_feature="patch",
        moe_num_experts=shapes["experts"],
        **VARIANTS[variant],
    )
    if "pargo" in variant:
        config.pargo_num_partial_queries, config.pargo_num_global_queries = shapes["partial"], shapes["glob"]
    proj = build_vision_projector(config)
    batch, hidden = shapes["batch"], shapes["hidden"]
    image = torch.randn(batch, 1 + shapes["patches"], shapes["vision"])
    if not proj.requires_text_guidance:
        return proj, {"image": image[:, 1:]}
    text = torch.randn(batch, shapes["text"], hidden)
    mask = torch.ones(batch, shapes["text"], dtype=torch.bool)
    mask[:, shapes["text"] // 2 :] = torch.rand(batch, shapes["text"] - shapes["text"] // 2) < 0.5
    return proj, {"image": image, "text_embeds": text, "text_mask": mask}


def step(proj: torch.nn.Module, inputs: dict) -> None:
    """One forward + backward; gradients are dropped first so each step allocates them afresh."""
    proj.zero_grad(set_to_none=True)
    image = inputs["image"]
    out = proj(image, **{k: v for k, v in inputs.items() if k != "image"})
    out.visual_tokens.square().mean().backward()


def time_variants(shapes: dict, warmup: int, iters: int) -> dict[str, float]:
    """Median seconds per fwd+bwd of each variant; the variants take turns so load spikes hit all."""
    built = {variant: build(variant, shapes) for variant in VARIANTS}
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for i in range(warmup + iters):
        for variant, (proj, inputs) in built.items():
            start = time.perf_counter()
            step(proj, inputs)
            if i >= warmup:
                times[variant].append(time.perf_counter() - start)
    return {variant: statistics.median(t) for variant, t in times.items()}


def build_llm(shapes: dict, layers: int) -> LlamaForCausalLM:
    """A tiny LLaMA of the LLM width C (the projectors' output width)."""
    torch.manual_seed(0)
    hidden = shapes["hidden"]
    config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=8, num_key_value_heads=8, vocab_size=1024,
                         max_position_embeddings=4096, attn_implementation="sdpa")
    return LlamaForCausalLM(config)


def llm_step(proj, llm, optimizer, inputs: dict, text_ids: torch.Tensor) -> None:
    """One training step of projector + LLM: [visual tokens; text] -> loss on the text -> AdamW."""
    optimizer.zero_grad(set_to_none=True)
    visual = proj(inputs["image"], **{k: v for k, v in inputs.items() if k != "image"}).visual_tokens
    embeds = torch.cat([visual, llm.get_input_embeddings()(text_ids)], dim=1)
    labels = torch.cat([torch.full(visual.shape[:2], IGNORE_INDEX), text_ids], dim=1)
    llm(inputs_embeds=embeds, labels=labels).loss.backward()
    optimizer.step()


def time_llm_steps(shapes: dict, layers: int, warmup: int, iters: int) -> dict[str, float]:
    """Median seconds per training step of each `LLM_STEP_VARIANTS` projector + the same tiny LLM."""
    text_ids = torch.randint(0, 1024, (shapes["batch"], shapes["text"]), generator=torch.Generator().manual_seed(2))
    runs = {}
    for variant in LLM_STEP_VARIANTS:
        proj, inputs = build(variant, shapes)
        llm = build_llm(shapes, layers)
        runs[variant] = (proj, llm, torch.optim.AdamW([*proj.parameters(), *llm.parameters()], lr=1e-5), inputs)
    times: dict[str, list[float]] = {variant: [] for variant in runs}
    for i in range(warmup + iters):
        for variant, (proj, llm, optimizer, inputs) in runs.items():
            start = time.perf_counter()
            llm_step(proj, llm, optimizer, inputs, text_ids)
            if i >= warmup:
                times[variant].append(time.perf_counter() - start)
    return {variant: statistics.median(t) for variant, t in times.items()}


def _status_bytes(field: str) -> int:
    """VmRSS / VmHWM of this process from /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def _reset_peak_rss() -> None:
    """Reset VmHWM (the peak RSS) to the current RSS (Linux >= 4.0), so imports do not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure_memory(variant: str, shapes: dict) -> dict:
    """Run in a fresh process: peak RSS increase over one step and bytes saved for backward."""
    # A tiny step first, so one-time library initialisation is not counted as the step's memory.
    step(*build(variant, dict(shapes, batch=1, patches=4, partial=2, glob=1)))
    proj, inputs = build(variant, shapes)
    saved: dict[tuple, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return tensor

    params = {p.untyped_storage().data_ptr() for p in proj.parameters()}
    _reset_peak_rss()
    before = _status_bytes("VmRSS")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(proj, inputs)
    peak = _status_bytes("VmHWM")
    activations = sum(n for (ptr, _), n in saved.items() if ptr not in params)
    return {"peak_rss_increase": peak - before, "saved_for_backward": activations}


def memory_in_subprocess(variant: str, quick: bool) -> dict:
    cmd = [sys.executable, __file__, "--memory-of", variant] + (["--quick"] if quick else [])
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small shapes for a smoke run")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: stable timings on a shared machine)"
    )
    parser.add_argument("--llm-layers", type=int, default=2, help="decoder layers of the tiny LLM")
    parser.add_argument("--llm-batch", type=int, default=4, help="images per training step of projector + LLM")
    parser.add_argument("--memory-of", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = QUICK if args.quick else FULL
    if args.memory_of:
        print(json.dumps(measure_memory(args.memory_of, shapes)))
        return

    print(
        f"shapes: B={shapes['batch']} N={1 + shapes['patches']} (1 CLS + {shapes['patches']}) "
        f"D={shapes['vision']} C={shapes['hidden']} I=C E={shapes['experts']} T={shapes['text']}; "
        f"pargo P={shapes['partial']} G={shapes['glob']}; "
        f"float32 CPU, {torch.get_num_threads()} threads; median of {args.iters} fwd+bwd after {args.warmup} warm-up"
    )
    for variant in VARIANTS:
        print(f"LLM positions per image, {variant}: {build(variant, dict(shapes, batch=1))[0].num_output_tokens(shapes['patches'])}")
    seconds = time_variants(shapes, args.warmup, args.iters)
    for variant, s in seconds.items():
        print(f"{variant}: {s * 1000:.1f} ms per fwd+bwd")
    print(f"top_k=1 vs dense: {seconds['parrot_moe dense'] / seconds['parrot_moe top_k=1']:.2f}x")
    print(
        f"dense parrot_moe vs mlp2x_gelu: {seconds['parrot_moe dense'] / seconds['mlp2x_gelu']:.2f}x the time"
    )
    print(f"pargo vs mlp2x_gelu: {seconds['pargo'] / seconds['mlp2x_gelu']:.2f}x the time (fwd+bwd, projector alone)")
    step_shapes = dict(shapes, batch=args.llm_batch)
    steps = time_llm_steps(step_shapes, args.llm_layers, args.warmup, args.iters)
    for variant, s in steps.items():
        print(f"training step, {variant} + {args.llm_layers}-layer LLM of width C (B={args.llm_batch}): {s * 1000:.1f} ms")
    print(f"training step pargo vs mlp2x_gelu: {steps['pargo'] / steps['mlp2x_gelu']:.2f}x the time")
    for variant in VARIANTS:
        mem = memory_in_subprocess(variant, args.quick)
        print(
            f"peak memory {variant}: {mem['peak_rss_increase'] / 2**20:.0f} MiB peak RSS increase over one "
            f"fwd+bwd, {mem['saved_for_backward'] / 2**20:.0f} MiB saved for backward"
        )


if __name__ == "__main__":
    main()
