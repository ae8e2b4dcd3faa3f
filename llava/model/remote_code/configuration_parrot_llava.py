"""`ParrotLlavaConfig`: transformers' `LlavaConfig` plus the projector this folder ships.

`parrot_projector` describes the projector module (its `type`, its settings, and for a stacked one its
`base`); `parrot_config` keeps the projector's fields of the original checkpoint's config so that
`python -m llava.model.convert from-hf` restores them exactly. Everything else is transformers' Llava.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import LlavaConfig


@strict
class ParrotLlavaConfig(LlavaConfig):
    model_type = "parrot_llava_remote"

    parrot_projector: dict | None = None
    parrot_config: dict | None = None
