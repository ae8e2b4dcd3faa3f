"""`LlavaForCausalLM`: vision tower -> projector -> any decoder-only Hugging Face LLM.

The LLM is held whole (`language_model`, an `AutoModelForCausalLM`), so every backbone that
transformers can build works unchanged: Qwen2, LLaMA/Vicuna, Mistral, ... Without images the model
is exactly the bare LLM (input_ids go straight through). With images, the `<image>` sentinels
(IMAGE_TOKEN_INDEX) are replaced by projected visual tokens (see `multimodal_merge`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from llava.constants import IMAGE_TOKEN_INDEX
from llava.model.configuration_llava import LlavaConfig
from llava.model.multimodal_encoder.vision_tower import VisionTower
from llava.model.multimodal_merge import image_owner, merge_image_features, prompt_token_mask
from llava.model.multimodal_projector.builder import (
    build_vision_projector,
    projector_requires_text_guidance,
    projector_wants_cls_token,
)
from llava.model.supervised_loss import supervised_causal_lm_loss, supports_supervised_loss


class LlavaPreTrainedModel(PreTrainedModel):
    config_class = LlavaConfig
    base_model_prefix = "language_model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        # Only the projector is ours; the LLM and the vision tower initialise themselves.
        std = getattr(self.config.text_config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class LlavaForCausalLM(LlavaPreTrainedModel):
    def __init__(self, config: LlavaConfig, language_model: PreTrainedModel | None = None):
        super().__init__(config)
        self.language_model = language_model or AutoModelForCausalLM.from_config(config.text_config)
        self.vision_tower: VisionTower | None = None
        self.mm_projector: nn.Module | None = None
        if config.has_vision:
            self.vision_tower = VisionTower(config.vision_config, config.mm_vision_select_layer)
            self.mm_projector = build_vision_projector(config)
        self.post_init()

    # ---- delegation to the LLM -------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    @property
    def generation_config(self):
        return self.language_model.generation_config

    @generation_config.setter
    def generation_config(self, value) -> None:
        if "language_model" in self._modules:
            self.language_model.generation_config = value

    # ---- images -----------------------------------------------------------------------------
    @property
    def num_image_tokens(self) -> int:
        """Visual tokens one image occupies in the LLM sequence."""
        if self.vision_tower is None:
            return 0
        emits_cls = self.config.mm_vision_select_feature == "cls_patch"
        return self.vision_tower.num_patches + int(emits_cls)

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """pixel_values (num_images, 3, H, W) -> visual tokens (num_images, N_out, C).

        text_embeds (num_images, T, C) / text_mask (num_images, T) are only used by projectors that
        declare `requires_text_guidance`.
        """
        if self.vision_tower is None:
            raise ValueError("this model has no vision tower (config.vision_config is None) but got images")
        features = self.vision_tower(pixel_values)
        if self.config.mm_vision_select_feature == "patch" and not projector_wants_cls_token(self.mm_projector):
            features = features[:, 1:]
        features = features.to(self.mm_projector_dtype)
        if projector_requires_text_guidance(self.mm_projector):
            return self.mm_projector(features, text_embeds=text_embeds, text_mask=text_mask)
        return self.mm_projector(features)

    @property
    def _supervised_loss(self) -> bool:
        """Whether training can use `supervised_causal_lm_loss` (decided once from the LLM's config)."""
        if not hasattr(self, "_supervised_loss_ok"):
            self._supervised_loss_ok = supports_supervised_loss(self.language_model)
        return self._supervised_loss_ok

    @property
    def mm_projector_dtype(self) -> torch.dtype:
        param = next(self.mm_projector.parameters(), None)
        return param.dtype if param is not None else self.language_model.dtype

    def prepare_inputs_embeds(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        padding_side: str = "right",
    ):
        """input_ids with sentinels (B, T) + images (num_images, 3, H, W) -> `MergedInputs`."""
        token_embeds = self.get_input_embeddings()(input_ids.clamp(min=0))
        image_features = None
        if images is not None and len(images):
            text_embeds = text_mask = None
            if projector_requires_text_guidance(self.mm_projector):
                owner = image_owner(input_ids)
                text_embeds = token_embeds[owner]
                text_mask = prompt_token_mask(input_ids, attention_mask, labels)[owner]
            image_features = self.get_image_features(images, text_embeds, text_mask)
        return merge_image_features(
            input_ids,
            token_embeds,
            image_features,
            attention_mask=attention_mask,
            labels=labels,
            max_length=self.config.tokenizer_model_max_length,
            padding_side=padding_side,
        )

    # ---- forward / generate -----------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        images: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Training/scoring forward. `images` holds one image per `<image>` sentinel, in order.

        In training mode with labels, the loss is computed from the supervised positions only
        (`supervised_loss`): the returned `logits` is then None. In eval mode, or for backbones
        that transform their logits, the LLM's own forward runs and returns full logits.
        """
        has_images = input_ids is not None and images is not None and bool((input_ids == IMAGE_TOKEN_INDEX).any())
        if has_images:
            merged = self.prepare_inputs_embeds(input_ids, images, attention_mask, labels)
            input_ids, inputs_embeds = None, merged.inputs_embeds
            attention_mask, position_ids, labels = merged.attention_mask, merged.position_ids, merged.labels
        if self.training and labels is not None and past_key_values is None and self._supervised_loss:
            loss = supervised_causal_lm_loss(
                self.language_model, inputs_embeds, input_ids, attention_mask, position_ids, labels, **kwargs
            )
            outputs = CausalLMOutputWithPast(loss=loss)
        else:
            outputs = self.language_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                inputs_embeds=inputs_embeds,
                labels=labels,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
        aux_loss = getattr(self.mm_projector, "aux_loss", None) if has_images else None
        if aux_loss is not None and outputs.loss is not None:
            outputs.loss = outputs.loss + aux_loss
            outputs["aux_loss"] = aux_loss.detach()
        return outputs

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        images: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **generate_kwargs,
    ):
        """Generate from prompts with `<image>` sentinels; returns only the new tokens.

        Visual tokens (and any text-guided routing) are computed once, at prefill; decoding then
        runs on the LLM's KV cache. Batches must be left-padded.
        """
        if images is None or not bool((input_ids == IMAGE_TOKEN_INDEX).any()):
            out = self.language_model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
            return out[:, input_ids.shape[1] :]
        merged = self.prepare_inputs_embeds(input_ids, images, attention_mask, padding_side="left")
        return self.language_model.generate(
            inputs_embeds=merged.inputs_embeds, attention_mask=merged.attention_mask, **generate_kwargs
        )
