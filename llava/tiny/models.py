"""Tiny random-init models: the sizes, the configs, and one writer per asset folder.

Every writer saves with `save_pretrained`, so the folder loads through the same `from_pretrained` code path
as a hub checkpoint. Weights are drawn under `torch.manual_seed(seed)` inside a forked RNG, so they depend
only on the seed and the sizes, and the caller's random state is untouched.

The image processors are built from the PIL-backend classes (torchvision is never installed here, and
importing the plain names would warn about it). They save `image_processor_type` without the backend
suffix, so `AutoImageProcessor` picks the PIL class where torchvision is absent, without a warning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    ChineseCLIPImageProcessorPil,
    ChineseCLIPVisionConfig,
    ChineseCLIPVisionModel,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    CLIPVisionModel,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

LLM_FIELDS = ("hidden_size", "intermediate_size", "layers", "heads", "kv_heads", "max_position_embeddings")
VISION_FIELDS = (
    "vision_hidden_size",
    "vision_intermediate_size",
    "vision_layers",
    "vision_heads",
    "image_size",
    "patch_size",
)


@dataclass(frozen=True)
class TinySizes:
    """Sizes of the tiny models. `None` fields are derived: intermediate sizes are twice the width, and
    `kv_heads` is half of `heads` when `heads` is even (grouped-query attention), else `heads`.

    Each field is also a CLI flag of `python -m llava.tiny build` (`hidden_size` -> `--hidden-size`).
    """

    hidden_size: int = field(default=64, metadata={"help": "LLM width"})
    intermediate_size: int | None = field(
        default=None, metadata={"help": "LLM MLP width (default: 2 x width)"}
    )
    layers: int = field(default=2, metadata={"help": "LLM decoder layers"})
    heads: int = field(default=4, metadata={"help": "LLM attention heads"})
    kv_heads: int | None = field(
        default=None, metadata={"help": "LLM key/value heads (default: heads / 2, or heads if odd)"}
    )
    max_position_embeddings: int = field(
        default=4096, metadata={"help": "LLM context length, also the tokenizer model_max_length"}
    )
    vision_hidden_size: int = field(default=64, metadata={"help": "vision tower width"})
    vision_intermediate_size: int | None = field(
        default=None, metadata={"help": "vision MLP (default: 2 x width)"}
    )
    vision_layers: int = field(default=2, metadata={"help": "vision tower layers"})
    vision_heads: int = field(default=4, metadata={"help": "vision tower attention heads"})
    image_size: int = field(default=32, metadata={"help": "input resolution in pixels"})
    patch_size: int = field(default=8, metadata={"help": "patch size in pixels"})

    def __post_init__(self) -> None:
        for size in dataclasses.fields(self):
            value = getattr(self, size.name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"--{size.name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.intermediate_size is None:
            object.__setattr__(self, "intermediate_size", 2 * self.hidden_size)
        if self.vision_intermediate_size is None:
            object.__setattr__(self, "vision_intermediate_size", 2 * self.vision_hidden_size)
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads // 2 if self.heads % 2 == 0 else self.heads)
        _require_divisible("hidden-size", self.hidden_size, "heads", self.heads)
        _require_divisible("heads", self.heads, "kv-heads", self.kv_heads)
        _require_divisible("vision-hidden-size", self.vision_hidden_size, "vision-heads", self.vision_heads)
        _require_divisible("image-size", self.image_size, "patch-size", self.patch_size)

    @classmethod
    def from_overrides(cls, **overrides: int | None) -> TinySizes:
        """Default sizes with some fields replaced; `None` values keep the default."""
        known = {size.name for size in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"Unknown tiny-model size(s) {unknown}; valid names are {sorted(known)}")
        return cls(**{name: value for name, value in overrides.items() if value is not None})

    def subset(self, names: tuple[str, ...]) -> dict[str, int]:
        """The named fields as a dict (what one asset folder depends on)."""
        return {name: getattr(self, name) for name in names}

    @property
    def num_patches(self) -> int:
        """Patch tokens per image: `(image_size // patch_size) ** 2`."""
        return (self.image_size // self.patch_size) ** 2


def _require_divisible(name: str, value: int, by_name: str, by_value: int) -> None:
    if value % by_value:
        raise ValueError(f"--{name} ({value}) must be divisible by --{by_name} ({by_value})")


def _seeded_init(seed: int, build: type, config: object) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(config)


def _generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """Greedy decoding that stops at EOS and at the pad token when it differs (for both tokenizers the pad
    is `<|endoftext|>`, the end-of-document token of pre-training)."""
    eos_ids = [tokenizer.eos_token_id]
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in eos_ids:
        eos_ids.append(tokenizer.pad_token_id)
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )


def _llm_config_kwargs(sizes: TinySizes, tokenizer: PreTrainedTokenizerBase) -> dict[str, object]:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": sizes.hidden_size,
        "intermediate_size": sizes.intermediate_size,
        "num_hidden_layers": sizes.layers,
        "num_attention_heads": sizes.heads,
        "num_key_value_heads": sizes.kv_heads,
        "max_position_embeddings": sizes.max_position_embeddings,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": "float32",
    }


def _save_llm(
    out: Path, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, sizes: TinySizes
) -> None:
    model.generation_config = _generation_config(tokenizer)
    model.save_pretrained(out)
    tokenizer.model_max_length = sizes.max_position_embeddings
    tokenizer.save_pretrained(out)


def write_tiny_qwen2(out: Path, tokenizer: PreTrainedTokenizerBase, sizes: TinySizes, seed: int) -> None:
    """Save a random-init `Qwen2ForCausalLM` with `tokenizer` (vocab_size = len(tokenizer)) into `out`."""
    config = Qwen2Config(**_llm_config_kwargs(sizes, tokenizer))
    _save_llm(out, _seeded_init(seed, Qwen2ForCausalLM, config), tokenizer, sizes)


def write_tiny_llama(out: Path, tokenizer: PreTrainedTokenizerBase, sizes: TinySizes, seed: int) -> None:
    """Save a random-init `LlamaForCausalLM` with `tokenizer` (vocab_size = len(tokenizer)) into `out`."""
    config = LlamaConfig(**_llm_config_kwargs(sizes, tokenizer))
    _save_llm(out, _seeded_init(seed, LlamaForCausalLM, config), tokenizer, sizes)


def _vision_config_kwargs(sizes: TinySizes) -> dict[str, object]:
    return {
        "hidden_size": sizes.vision_hidden_size,
        "intermediate_size": sizes.vision_intermediate_size,
        "num_hidden_layers": sizes.vision_layers,
        "num_attention_heads": sizes.vision_heads,
        "image_size": sizes.image_size,
        "patch_size": sizes.patch_size,
        "num_channels": 3,
        "dtype": "float32",
    }


def write_tiny_clip(out: Path, sizes: TinySizes, seed: int) -> None:
    """Save a random-init `CLIPVisionModel` (1 CLS + `sizes.num_patches` tokens) and its image processor:
    CLIP mean/std, bicubic resize of the shortest edge to `image_size`, then a centre crop to a square."""
    config = CLIPVisionConfig(projection_dim=sizes.vision_hidden_size, **_vision_config_kwargs(sizes))
    _seeded_init(seed, CLIPVisionModel, config).save_pretrained(out)
    CLIPImageProcessorPil(
        size={"shortest_edge": sizes.image_size},
        crop_size={"height": sizes.image_size, "width": sizes.image_size},
        resample=PILImageResampling.BICUBIC,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    ).save_pretrained(out)


def write_tiny_chinese_clip(out: Path, sizes: TinySizes, seed: int) -> None:
    """Save a random-init `ChineseCLIPVisionModel` (1 CLS + `sizes.num_patches` tokens, the tower of the
    paper's Fig 1 comparison) and its image processor: a bicubic resize straight to `image_size` x
    `image_size` (no crop, as Chinese-CLIP preprocesses), CLIP mean/std."""
    config = ChineseCLIPVisionConfig(projection_dim=sizes.vision_hidden_size, **_vision_config_kwargs(sizes))
    _seeded_init(seed, ChineseCLIPVisionModel, config).save_pretrained(out)
    ChineseCLIPImageProcessorPil(
        size={"height": sizes.image_size, "width": sizes.image_size},
        do_center_crop=False,
        resample=PILImageResampling.BICUBIC,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    ).save_pretrained(out)


def write_tiny_siglip(out: Path, sizes: TinySizes, seed: int) -> None:
    """Save a random-init `SiglipVisionModel` (`sizes.num_patches` tokens, no CLS) and its image processor:
    resize to `image_size` x `image_size`, mean/std 0.5."""
    config = SiglipVisionConfig(**_vision_config_kwargs(sizes))
    _seeded_init(seed, SiglipVisionModel, config).save_pretrained(out)
    SiglipImageProcessorPil(
        size={"height": sizes.image_size, "width": sizes.image_size},
        resample=PILImageResampling.BICUBIC,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(out)
