"""`train.py` with FlashAttention-2 when flash-attn and CUDA are present, SDPA otherwise."""

from __future__ import annotations

from llava.optional import flash_attention_available
from llava.train.train import main

if __name__ == "__main__":
    main(attn_implementation="flash_attention_2" if flash_attention_available() else "sdpa")
