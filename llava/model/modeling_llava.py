"""`LlavaForCausalLM`: vision tower -> projector -> any decoder-only Hugging Face LLM.

The LLM is held whole (`language_model`, an `AutoModelForCausalLM`), so every backbone that
transformers can build works unchanged: Qwen2, LLaMA/Vicuna, Mistral, ... Without images the model
is exactly the bare LLM (input_ids go straight through). With images, the `<image>` sentinels
(IMAGE_TOKEN_INDEX) are replaced by projected visual tokens (see `multimodal_merge`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.modeling_outputs import CausalLMOutputWithPast

from llava.constants import IMAGE_TOKEN_INDEX
from llava.model.configuration_llava import LlavaConfig
from llava.model.multimodal_encoder.vision_tower import VisionTower, load_vision_config
from llava.model.multimodal_merge import MergedInputs, merge_image_features, text_guidance
from llava.model.multimodal_projector.base import ProjectorOutput, select_features_for
from llava.model.multimodal_projector.builder import build_vision_projector
from llava.model.multimodal_projector.builtin import LinearProjector
from llava.model.packed_rows import join_rows_for_flash_attention
from llava.model.supervised_loss import supervised_causal_lm_loss, supports_supervised_loss
from llava.model.zero3 import zero3_init_context


@dataclass
class LlavaCausalLMOutput(CausalLMOutputWithPast):
    """The LLM's output plus what the projector returned for this batch's images.

    aux_loss: the projector's auxiliary loss (already included in `loss`), detached, or None.
    projector_metrics: per-image tensors (num_images, ...) in sentinel order (see `image_owner`).
    """

    aux_loss: torch.FloatTensor | None = None
    projector_metrics: dict[str, torch.Tensor] | None = None


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
        if isinstance(module, (nn.Linear, LinearProjector)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class LlavaForCausalLM(LlavaPreTrainedModel):
    """Vision tower -> projector -> LLM. Build it from parts with `from_components`, or load it with
    `from_pretrained`; the constructor alone builds a randomly initialised model from a config."""

    def __init__(self, config: LlavaConfig, language_model: PreTrainedModel | None = None):
        super().__init__(config)
        self.language_model = language_model or AutoModelForCausalLM.from_config(config.text_config)
        self.vision_tower: VisionTower | None = None
        self.mm_projector: nn.Module | None = None
        if config.has_vision:
            self.vision_tower = VisionTower(config.vision_config, config.mm_vision_select_layer)
            self.mm_projector = build_vision_projector(config)
        self.post_init()

    @classmethod
    def from_components(
        cls,
        language_model: PreTrainedModel,
        vision_tower: str | None = None,
        config: LlavaConfig | None = None,
        dtype: torch.dtype | None = None,
        **settings,
    ) -> LlavaForCausalLM:
        """Assemble a model around a loaded LLM: the one place a model is built from parts.

        Either a fresh model: `vision_tower` (a CLIP/SigLIP checkpoint path or hub id, or None for a
        text-only model) and `settings` (LlavaConfig fields, e.g. `mm_projector_type`); or the model a
        saved multimodal `config` describes, on top of `language_model` (a stage-1 projector or LoRA
        adapter on its `model_base`), whose vocabulary is grown to the config's if tokens were added.
        The tower's pretrained weights load from `config.mm_vision_tower`; under ZeRO-3 the new modules
        are partitioned as they are built. Tower and projector are cast to `dtype` (default: the LLM's).
        """
        if config is None:
            config = LlavaConfig(
                text_config=language_model.config,
                vision_config=load_vision_config(vision_tower) if vision_tower else None,
                mm_vision_tower=vision_tower,
                attn_implementation=language_model.config._attn_implementation,
                **settings,
            )
        else:
            if vision_tower is not None or settings:
                raise TypeError("from_components takes either a saved config or vision_tower + settings, not both")
            vocab_size = config.text_config.vocab_size
            if language_model.get_input_embeddings().weight.shape[0] < vocab_size:
                language_model.resize_token_embeddings(vocab_size, mean_resizing=False)
            config.text_config = language_model.config
        with zero3_init_context():
            model = cls(config, language_model=language_model)
        if config.has_vision and config.mm_vision_tower:
            model.vision_tower.load_pretrained_weights(config.mm_vision_tower)
        if config.has_vision and not is_deepspeed_zero3_enabled():  # DeepSpeed casts partitions itself
            dtype = dtype or language_model.dtype
            model.vision_tower.to(dtype)
            model.mm_projector.to(dtype)
        return model

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
        return self.mm_projector.num_output_tokens(self.vision_tower.num_patches)

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> ProjectorOutput:
        """pixel_values (num_images, 3, H, W) -> the projector's output, whose `visual_tokens` are
        (num_images, N_out, C).

        text_embeds (num_images, T, C) / text_mask (num_images, T) are only passed to projectors that
        declare `requires_text_guidance`.
        """
        if self.vision_tower is None:
            raise ValueError("this model has no vision tower (config.vision_config is None) but got images")
        features = self.vision_tower(pixel_values)
        features = select_features_for(self.mm_projector, features, self.config.mm_vision_select_feature)
        features = features.to(self.mm_projector_dtype)
        if self.mm_projector.requires_text_guidance:
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
        position_ids: torch.Tensor | None = None,
    ) -> MergedInputs:
        """input_ids with sentinels (B, T) + images (num_images, 3, H, W) -> `MergedInputs` (with the
        projector's output, so callers read its aux loss and metrics from the result).

        position_ids (B, T) only for packed rows (positions restart at 0 at each sample): merged
        positions then restart at the same samples, and text guidance stays inside each sample.
        """
        token_embeds = self.get_input_embeddings()(input_ids.clamp(min=0))
        projected = None
        if images is not None and len(images):
            text_embeds = text_mask = None
            if self.mm_projector.requires_text_guidance:
                text_embeds, text_mask = text_guidance(token_embeds, input_ids, attention_mask, labels, position_ids)
            projected = self.get_image_features(images, text_embeds, text_mask)
        merged = merge_image_features(
            input_ids,
            token_embeds,
            None if projected is None else projected.visual_tokens,
            attention_mask=attention_mask,
            labels=labels,
            max_length=self.config.tokenizer_model_max_length,
            padding_side=padding_side,
            position_ids=position_ids,
        )
        merged.projector_output = projected
        return merged

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
    ) -> LlavaCausalLMOutput:
        """Training/scoring forward. `images` holds one image per `<image>` sentinel, in order.

        In training mode with labels, the loss is computed from the supervised positions only
        (`supervised_loss`): the returned `logits` is then None. In eval mode, or for backbones
        that transform their logits, the LLM's own forward runs and returns full logits.

        Packed rows (`--packing`, `llava.data.packing`): `position_ids` restart at 0 at each sample,
        `attention_mask` marks the padding at the end of each row, and every sample's first label is
        IGNORE_INDEX. The LLM then gets the (merged) position ids and no 2-D mask, from which
        transformers builds a block-causal mask: no token attends outside its own sample.
        """
        has_images = input_ids is not None and images is not None and bool((input_ids == IMAGE_TOKEN_INDEX).any())
        packed = position_ids is not None and past_key_values is None
        projected = None
        if has_images:
            merged = self.prepare_inputs_embeds(
                input_ids, images, attention_mask, labels, position_ids=position_ids if packed else None
            )
            input_ids, inputs_embeds = None, merged.inputs_embeds
            attention_mask, position_ids, labels = merged.attention_mask, merged.position_ids, merged.labels
            projected = merged.projector_output
        rows = None
        if packed:
            # transformers only reads packed samples from position ids without a 2-D mask and without a cache.
            attention_mask, use_cache = None, False
            if "flash" in self.language_model.config._attn_implementation:
                rows = (input_ids if input_ids is not None else inputs_embeds).shape[0]
                input_ids, inputs_embeds, position_ids, labels = join_rows_for_flash_attention(
                    input_ids, inputs_embeds, position_ids, labels
                )
        if self.training and labels is not None and past_key_values is None and self._supervised_loss:
            loss = supervised_causal_lm_loss(
                self.language_model, inputs_embeds, input_ids, attention_mask, position_ids, labels, **kwargs
            )
            outputs = LlavaCausalLMOutput(loss=loss)
        else:
            if past_key_values is not None:  # transformers >= 5.24 warns about the name even when it is None
                kwargs["past_key_values"] = past_key_values
            outputs = self.language_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                labels=labels,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
            outputs = LlavaCausalLMOutput(**outputs)
            if rows is not None and outputs.logits is not None:
                outputs.logits = outputs.logits.view(rows, -1, outputs.logits.shape[-1])
        if projected is not None:
            outputs.projector_metrics = projected.metrics
            if projected.aux_loss is not None and outputs.loss is not None:
                outputs.loss = outputs.loss + projected.aux_loss
                outputs.aux_loss = projected.aux_loss.detach()
        return outputs

    def prefill_inputs(
        self,
        input_ids: torch.LongTensor,
        images: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], ProjectorOutput | None]:
        """Keyword arguments for `language_model.generate` on a left-padded batch, and what the
        projector returned for its images (None without images).

        With images the visual tokens (and any text-guided routing) are computed here, once; decoding
        then runs on the LLM's KV cache. Without images the LLM gets the token ids unchanged.
        """
        if images is None or not bool((input_ids == IMAGE_TOKEN_INDEX).any()):
            return {"input_ids": input_ids, "attention_mask": attention_mask}, None
        merged = self.prepare_inputs_embeds(input_ids, images, attention_mask, padding_side="left")
        inputs = {"inputs_embeds": merged.inputs_embeds, "attention_mask": merged.attention_mask}
        return inputs, merged.projector_output

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        images: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **generate_kwargs,
    ):
        """Generate from prompts with `<image>` sentinels; returns only the new tokens (B, new).

        Batches must be left-padded. See `prefill_inputs` for what happens before decoding.
        """
        inputs, _ = self.prefill_inputs(input_ids, images, attention_mask)
        out = self.language_model.generate(**inputs, **generate_kwargs)
        return out[:, input_ids.shape[1] :] if "input_ids" in inputs else out
