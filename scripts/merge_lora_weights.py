"""Merge a LoRA training output into a standalone checkpoint (upstream LLaVA's script, same flags).

    python scripts/merge_lora_weights.py --model-path ./checkpoints/parrot-qwen1.5-7b-lora \
        --model-base Qwen/Qwen1.5-7B-Chat --save-model-path ./checkpoints/parrot-qwen1.5-7b-merged

`--model-path` is the folder `--lora_enable True` training wrote (adapter, non_lora_trainables,
config.json); `--model-base` the LLM it was trained on. The result loads without `--model-base`:
`load_pretrained_model(save_model_path)`.
"""

from __future__ import annotations

import argparse
import logging

import torch

from llava.model.builder import load_pretrained_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", required=True, help="LoRA output folder (has adapter_config.json)")
    parser.add_argument("--model-base", required=True, help="the LLM (or LLaVA checkpoint) the adapter was trained on")
    parser.add_argument("--save-model-path", required=True, help="where to write the merged checkpoint")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16", help="dtype of the saved weights")
    return parser.parse_args(argv)


def merge_lora(model_path: str, model_base: str, save_model_path: str, dtype: torch.dtype) -> None:
    """Load adapter + non-LoRA trainables onto the base, merge, and save model, tokenizer, image processor."""
    tokenizer, model, image_processor, _ = load_pretrained_model(model_path, model_base, dtype=dtype)
    model.save_pretrained(save_model_path)
    tokenizer.save_pretrained(save_model_path)
    if image_processor is not None:
        image_processor.save_pretrained(save_model_path)
    logging.getLogger("merge_lora_weights").info("wrote the merged checkpoint to %s", save_model_path)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    merge_lora(args.model_path, args.model_base, args.save_model_path, DTYPES[args.dtype])


if __name__ == "__main__":
    main()
