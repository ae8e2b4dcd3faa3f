"""transformers' Llava with a projector of this folder (Parrot's text-guided MoE, ParGo's Q-Former).

Only what the projector needs is overridden: the projector module (built from
`config.parrot_projector` by the files next to this one), the vision features it reads (the CLS row
is kept under `vision_feature_select_strategy="full"`, which a routing projector always has), and for
a text-guided projector the prompt's word embeddings as its text guidance: every non-padding token
of the image's own row except the image placeholders, as the Parrot package computes it at
inference. The routing probabilities (num_images, E) come back as `routing_probs` on the output.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import AutoModel, LlavaForConditionalGeneration, LlavaModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava.modeling_llava import (
    LlavaCausalLMOutputWithPast,
    LlavaMultiModalProjector,
    LlavaPreTrainedModel,
)

from .configuration_parrot_llava import ParrotLlavaConfig
from .parrot_projectors import REMOTE_PROJECTORS
from .text_guidance import gather_guidance


@dataclass
class ParrotImageOutputs(BaseModelOutputWithPooling):
    """The vision tower's output, the projected images (`pooler_output`) and their routing (or None)."""

    routing_probs: torch.FloatTensor | None = None


@dataclass
class ParrotLlavaCausalLMOutputWithPast(LlavaCausalLMOutputWithPast):
    """Llava's output plus `routing_probs` (num_images, E) of a routing projector (None otherwise)."""

    routing_probs: torch.FloatTensor | None = None


def build_projector(spec: dict, config: ParrotLlavaConfig) -> torch.nn.Module:
    """The projector module that `spec` describes; `mlp2x_gelu` is transformers' own Llava projector."""
    if spec["type"] == "mlp2x_gelu":
        return LlavaMultiModalProjector(config)
    if spec["type"] not in REMOTE_PROJECTORS:
        raise ValueError(f"config.json parrot_projector type {spec['type']!r}: this folder ships {sorted(REMOTE_PROJECTORS)}")
    return REMOTE_PROJECTORS[spec["type"]](spec, lambda base: build_projector(base, config))


class ParrotLlavaModel(LlavaModel):
    config_class = ParrotLlavaConfig

    def __init__(self, config: ParrotLlavaConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = build_projector(config.parrot_projector, config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        vision_feature_layer: int | None = None,
        vision_feature_select_strategy: str | None = None,
        text_embeds: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> ParrotImageOutputs:
        layer = self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        strategy = vision_feature_select_strategy or self.config.vision_feature_select_strategy
        outputs = self.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
        features = outputs.hidden_states[layer]
        if strategy == "default":
            features = features[:, 1:]
        projector = self.multi_modal_projector
        if getattr(projector, "requires_text_guidance", False):
            if text_embeds is None:
                raise ValueError(
                    "this projector routes on the prompt: call the model with input_ids (not inputs_embeds) and "
                    "pixel_values, so it can read the prompt's word embeddings"
                )
            tokens, probs = projector(features, text_embeds, text_mask)
        else:
            tokens, probs = projector(features), None
        return ParrotImageOutputs(
            last_hidden_state=outputs.last_hidden_state, pooler_output=list(tokens),
            hidden_states=outputs.hidden_states, routing_probs=probs,
        )

    def text_guidance(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, num_images: int):
        """(text_embeds, text_mask) per image: the word embeddings of its row's non-padding, non-image tokens."""
        is_image = input_ids == self.config.image_token_id
        rows = is_image.nonzero(as_tuple=True)[0]
        if num_images == 0 or len(rows) % num_images:
            raise ValueError(f"{len(rows)} image tokens in input_ids do not split evenly over {num_images} images")
        owner = rows[:: len(rows) // num_images]  # the row of each image's first placeholder, in image order
        mask = ~is_image if attention_mask is None else ~is_image & attention_mask.bool()
        return gather_guidance(self.get_input_embeddings()(input_ids), mask[owner], owner)

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, mm_encoder_outputs=None, **kwargs):
        if pixel_values is not None and mm_encoder_outputs is None:
            text_embeds = text_mask = None
            if getattr(self.multi_modal_projector, "requires_text_guidance", False):
                if input_ids is None:
                    raise ValueError("this projector routes on the prompt: pass input_ids with pixel_values")
                text_embeds, text_mask = self.text_guidance(input_ids, attention_mask, pixel_values.shape[0])
            mm_encoder_outputs = {"image": self.get_image_features(
                pixel_values,
                kwargs.pop("vision_feature_layer", None),
                kwargs.pop("vision_feature_select_strategy", None),
                text_embeds=text_embeds,
                text_mask=text_mask,
            )}
            pixel_values = None
        return super().forward(
            input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
            mm_encoder_outputs=mm_encoder_outputs, **kwargs,
        )


class ParrotLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    config_class = ParrotLlavaConfig

    def __init__(self, config: ParrotLlavaConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.model = ParrotLlavaModel(config)
        self.lm_head = torch.nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def _supports_mm_encoder_outputs(self) -> bool:
        # generate() must hand pixel_values to the prefill forward, where the prompt (the text guidance) is.
        return False

    def forward(self, *args, **kwargs) -> ParrotLlavaCausalLMOutputWithPast:
        outputs = super().forward(*args, **kwargs)
        images = outputs.image_outputs
        return ParrotLlavaCausalLMOutputWithPast(
            **outputs, routing_probs=None if images is None else getattr(images, "routing_probs", None)
        )

    # Llava's own parameters: generate() reads which model inputs forward accepts from its signature.
    forward.__signature__ = inspect.signature(LlavaForConditionalGeneration.forward)
