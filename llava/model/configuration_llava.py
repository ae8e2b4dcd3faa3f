"""`LlavaConfig`: every knob of the multimodal model, saved to and restored from `config.json`.

The LLM's own config lives in `text_config` (any decoder-only `AutoConfig`), the vision tower's in
`vision_config` (CLIP, Chinese-CLIP or SigLIP vision config). Fields keep the names of upstream LLaVA's training
flags (`mm_projector_type`, `mm_vision_select_layer`, ...), and any extra projector setting (for
example the `moe_*` fields of a plugin) is stored under its flag name too, so a checkpoint
restores exactly the model that was trained. Nothing is ever decided from a folder name.
"""

from __future__ import annotations

from typing import Literal

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


class LlavaConfig(PreTrainedConfig):
    model_type = "parrot_llava"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2"),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="clip_vision_model", optional=True),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    mm_vision_tower: str | None = None
    # Defaults are upstream LLaVA's training-flag defaults; `llava.train.arguments` reads them from here,
    # so a config built in code and a run launched without the flag agree.
    mm_projector_type: str = "linear"
    mm_hidden_size: int | None = None
    mm_vision_select_layer: int = -1
    mm_vision_select_feature: Literal["patch", "cls_patch"] = "patch"
    mm_use_im_start_end: bool = False
    mm_use_im_patch_token: bool = True
    image_aspect_ratio: Literal["pad", "square"] = "square"
    tune_mm_mlp_adapter: bool = False
    conv_template: str | None = None
    tokenizer_model_max_length: int | None = None
    tokenizer_padding_side: str = "right"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.vision_config is not None and self.mm_hidden_size is None:
            self.mm_hidden_size = self.vision_config.hidden_size
        # The LLM decides whether its head is tied to its embeddings; mirror it so saving/loading agree.
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))

    # The LLM's width, vocabulary and embedding tying are read through from the text config; DeepSpeed's
    # "auto" values and the projector factories look for `config.hidden_size`.
    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    @property
    def has_vision(self) -> bool:
        return self.vision_config is not None
