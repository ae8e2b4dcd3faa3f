"""Model-facing helpers shared by the evaluation runners: sharding, batching, model loading.

Sharding follows upstream LLaVA: `--num-chunks N --chunk-idx K` gives the K-th of N contiguous
slices. Under torchrun (WORLD_SIZE and RANK set) and without explicit flags, N = WORLD_SIZE and
K = RANK, and each process uses GPU LOCAL_RANK.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch
from PIL import Image

logger = logging.getLogger(__name__)

T = TypeVar("T")
# generate(prompts, images) -> answers; prompts are user messages, images may be None per prompt.
GenerateFn = Callable[[list[str], list["Image.Image | None"]], list[str]]


def get_chunk(items: Sequence[T], num_chunks: int, chunk_idx: int) -> list[T]:
    """The `chunk_idx`-th of `num_chunks` contiguous slices (the last ones may be shorter or empty)."""
    if num_chunks < 1 or not 0 <= chunk_idx < num_chunks:
        raise ValueError(f"--chunk-idx {chunk_idx} must lie in [0, --num-chunks {num_chunks})")
    size = math.ceil(len(items) / num_chunks) if items else 0
    return list(items[chunk_idx * size : (chunk_idx + 1) * size])


def resolve_shard(num_chunks: int | None, chunk_idx: int | None) -> tuple[int, int]:
    """(num_chunks, chunk_idx) from the flags, else from torchrun's WORLD_SIZE/RANK, else (1, 0)."""
    if num_chunks is not None:
        return num_chunks, chunk_idx or 0
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return world_size, int(os.environ.get("RANK", "0")) if world_size > 1 else 0


def batched(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive batches of at most `size` items."""
    if size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def default_device() -> str:
    """`cuda:LOCAL_RANK` when a GPU is visible, else `cpu`."""
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


@dataclass
class LoadedModel:
    """A loaded checkpoint and a ready-to-call batched `generate`."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    image_processor: object
    context_len: int
    generate: GenerateFn
    render_prompt: Callable[[str, bool], str]  # (user message, has image) -> full templated prompt


def load_model(
    model_path: str,
    *,
    model_base: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float | None = None,
) -> LoadedModel:
    """Load a checkpoint with `load_pretrained_model` and bind `generate_batch` to it.

    `dtype` is a torch dtype name (`float32`, `bfloat16`, `float16`); default `default_dtype(device)`
    (bfloat16 on a GPU that supports it, float32 on the CPU).
    """
    from llava.inference import build_prompt, generate_batch
    from llava.model.builder import default_dtype, load_pretrained_model

    device = device or default_device()
    torch_dtype = default_dtype(device) if dtype is None else getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"--dtype {dtype!r} is not a torch dtype; use float32, bfloat16 or float16")
    tokenizer, model, image_processor, context_len = load_pretrained_model(
        model_path, model_base=model_base, model_name=None, device=device, dtype=torch_dtype
    )
    model.eval()
    generate = partial(
        generate_batch,
        model,
        tokenizer,
        image_processor,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
    )
    return LoadedModel(
        name=Path(model_path.rstrip("/")).name,
        model=model,
        tokenizer=tokenizer,
        image_processor=image_processor,
        context_len=context_len,
        generate=generate,
        render_prompt=partial(build_prompt, model),
    )


def model_loader(args: argparse.Namespace) -> Callable[[], LoadedModel]:
    """`load_model` bound to a runner's parsed flags, called only once rows need answers."""
    return partial(
        load_model,
        args.model_path,
        model_base=args.model_base,
        device=args.device,
        dtype=args.dtype,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
    )
