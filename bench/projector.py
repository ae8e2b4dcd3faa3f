"""Forward + backward cost of the parrot_moe projector against LLaVA's mlp2x_gelu, side by side.

    python bench/projector.py            # scaled-down 7B shapes: B=16, N=577, D=C=I=1024, E=6
    python bench/projector.py --quick    # small shapes, seconds

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

import parrot_moe  # noqa: F401  (registers the parrot_moe projector type)
from llava.model.multimodal_projector.builder import build_vision_projector

FULL = dict(batch=16, patches=576, vision=1024, hidden=1024, experts=6, text=64)
QUICK = dict(batch=4, patches=144, vision=256, hidden=256, experts=6, text=32)
VARIANTS = {
    "mlp2x_gelu": dict(mm_projector_type="mlp2x_gelu"),
    "parrot_moe dense": dict(mm_projector_type="parrot_moe"),
    "parrot_moe top_k=1": dict(mm_projector_type="parrot_moe", moe_top_k=1),
}


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
    step(*build(variant, dict(shapes, batch=1, patches=4)))
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
        f"float32 CPU, {torch.get_num_threads()} threads; median of {args.iters} fwd+bwd after {args.warmup} warm-up"
    )
    seconds = time_variants(shapes, args.warmup, args.iters)
    for variant, s in seconds.items():
        print(f"{variant}: {s * 1000:.1f} ms per fwd+bwd")
    print(f"top_k=1 vs dense: {seconds['parrot_moe dense'] / seconds['parrot_moe top_k=1']:.2f}x")
    print(
        f"dense parrot_moe vs mlp2x_gelu: {seconds['parrot_moe dense'] / seconds['mlp2x_gelu']:.2f}x the time"
    )
    for variant in VARIANTS:
        mem = memory_in_subprocess(variant, args.quick)
        print(
            f"peak memory {variant}: {mem['peak_rss_increase'] / 2**20:.0f} MiB peak RSS increase over one "
            f"fwd+bwd, {mem['saved_for_backward'] / 2**20:.0f} MiB saved for backward"
        )


if __name__ == "__main__":
    main()
