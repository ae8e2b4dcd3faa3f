"""`to-hf CKPT OUT`: one of our checkpoints as a transformers-native Llava folder.

OUT loads with `LlavaForConditionalGeneration.from_pretrained(OUT)` and `AutoProcessor.from_pretrained(OUT)`,
so the engines that read transformers' Llava (transformers itself, vLLM, SGLang, TGI) can serve it. The
folder holds the model (config with `image_token_index`, `image_seq_length`, `vision_feature_layer`,
`vision_feature_select_strategy`), the tokenizer with an `<image>` token added, the image processor, and a
processor config with the chat template of the checkpoint's conversation template.

Projectors transformers' Llava has no counterpart for but whose `ProjectorSpec` has an `export` hook
(parrot_moe, pargo) become the same folder plus remote code for the projector only, loaded with
`AutoModelForImageTextToText.from_pretrained(OUT, trust_remote_code=True)`: see
`llava.model.convert.remote`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from llava.constants import DEFAULT_IMAGE_TOKEN
from llava.model.convert.base import ConversionError, Converter, conversion_record
from llava.model.convert.chat_template import chat_template_for
from llava.model.convert.hf_llava import (
    EXPORTABLE_PROJECTORS,
    check_exportable,
    has_cls_token,
    projector_to_hf,
    select_strategy,
)
from llava.model.convert.remote import (
    AUTO_MAP,
    our_fields,
    remote_classes,
    remote_code_card,
    remote_export,
    write_code,
)
from llava.model.convert.weights import empty_model, fill_into_empty, load_pretrained_strictly, with_prefix
from llava.model.model_card import write_model_card

logger = logging.getLogger(__name__)


def read_model_type(folder: Path) -> str | None:
    """`model_type` of `folder/config.json`; FileNotFoundError naming the file when there is none."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; pass a checkpoint folder (config.json + weights)")
    return json.loads(path.read_text(encoding="utf-8")).get("model_type")


def _add_image_token(language_model, tokenizer) -> int:
    """Add `<image>` to the tokenizer (once) and give it an embedding row; returns its id.

    New rows (the embedding and an untied head) are the mean of the existing rows: the token is only
    a placeholder that the image features replace, and the mean keeps its logit unremarkable.
    """
    tokenizer.add_tokens([DEFAULT_IMAGE_TOKEN], special_tokens=True)
    image_token_id = tokenizer.convert_tokens_to_ids(DEFAULT_IMAGE_TOKEN)
    old_rows = language_model.get_input_embeddings().weight.shape[0]
    if image_token_id >= old_rows:
        language_model.resize_token_embeddings(image_token_id + 1, mean_resizing=False)
        with torch.no_grad():
            for layer in {id(m): m for m in (language_model.get_input_embeddings(), language_model.get_output_embeddings())}.values():
                layer.weight[old_rows:] = layer.weight[:old_rows].mean(dim=0)
    return image_token_id


def _image_processor_for_hf(image_processor, aspect_ratio: str):
    """Our processor as is, or for `pad` a `LlavaImageProcessor` that pads to square the same way first."""
    if aspect_ratio != "pad":
        return image_processor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    settings = {
        key: getattr(image_processor, key)
        for key in ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                    "do_normalize", "image_mean", "image_std", "do_convert_rgb")
        if getattr(image_processor, key, None) is not None
    }
    return LlavaImageProcessorPil(do_pad=True, **settings)


def convert_to_hf(checkpoint: Path, out: Path) -> Path:
    """Write `out` (see the module docstring) from our `checkpoint`; returns `out`."""
    from transformers import (
        AutoImageProcessor,
        AutoTokenizer,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from llava.model import LlavaConfig as OurConfig
    from llava.model import LlavaForCausalLM

    checkpoint, out = Path(checkpoint), Path(out)
    model_type = read_model_type(checkpoint)
    if model_type != OurConfig.model_type:
        raise ConversionError(
            f"{checkpoint}/config.json: model_type {model_type!r} is not {OurConfig.model_type!r}; to-hf converts "
            "checkpoints written by llava.train.train (import an AIDC-AI Parrot checkpoint with from-parrot first)"
        )
    if (checkpoint / "adapter_config.json").is_file() or not any(checkpoint.glob("*.safetensors")):
        raise ConversionError(
            f"{checkpoint}: no full model weights (*.safetensors); a LoRA adapter must be merged first "
            "(scripts/merge_lora_weights.py), a stage-1 projector trained into a full checkpoint"
        )
    check_exportable(OurConfig.from_pretrained(checkpoint), checkpoint, remote_ok=True)
    ours = load_pretrained_strictly(LlavaForCausalLM, checkpoint)
    config = ours.config
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    image_processor = AutoImageProcessor.from_pretrained(checkpoint)
    language_model = ours.language_model
    source_vocab_size = language_model.get_input_embeddings().weight.shape[0]
    image_token_id = _add_image_token(language_model, tokenizer)

    num_patches = ours.vision_tower.num_patches
    if config.mm_projector_type in EXPORTABLE_PROJECTORS:
        export = None
        strategy = select_strategy(config.mm_vision_select_feature, config.vision_config)
        act, projector = projector_to_hf(config.mm_projector_type, ours.mm_projector.state_dict())
        config_class, model_class, extra = LlavaConfig, LlavaForConditionalGeneration, {}
        additional_tokens = int(has_cls_token(config.vision_config))
    else:
        export, strategy = remote_export(ours, checkpoint)
        write_code(export, out)
        config_class, model_class = remote_classes(out)
        act, projector = "gelu", export.exported_keys(ours.mm_projector.state_dict())
        extra = {"parrot_projector": export.spec, "parrot_config": our_fields(config, source_vocab_size)}
        # transformers' processor writes patches + this many placeholders ("full" strategy: nothing dropped).
        additional_tokens = ours.num_image_tokens - num_patches
    hf_config = config_class(
        text_config=language_model.config.to_dict(),
        vision_config=config.vision_config.to_dict(),
        image_token_index=image_token_id,
        image_seq_length=ours.num_image_tokens,
        projector_hidden_act=act,
        vision_feature_select_strategy=strategy,
        vision_feature_layer=config.mm_vision_select_layer,
        multimodal_projector_bias=True,
        **extra,
    )
    if export is not None:
        hf_config.auto_map = dict(AUTO_MAP)
    base = getattr(language_model, language_model.base_model_prefix)
    state = {
        **with_prefix("model.language_model.", base.state_dict()),
        **with_prefix("lm_head.", language_model.get_output_embeddings().state_dict()),
        **with_prefix("model.vision_tower.", ours.vision_tower.encoder.state_dict()),
        **with_prefix("model.multi_modal_projector.", projector),
    }
    hf_model = fill_into_empty(empty_model(lambda: model_class(hf_config)), state, checkpoint)
    hf_model.generation_config = language_model.generation_config
    hf_model.save_pretrained(out)

    processor = LlavaProcessor(
        image_processor=_image_processor_for_hf(image_processor, config.image_aspect_ratio),
        tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=strategy if export is None else "full",
        chat_template=chat_template_for(config.conv_template or "chatml"),
        image_token=DEFAULT_IMAGE_TOKEN,
        num_additional_image_tokens=additional_tokens,
    )
    processor.save_pretrained(out)
    write_model_card(
        out, config, conversion_record("to-hf", checkpoint, out), library_name="transformers",
        remote_code=None if export is None else remote_code_card(export),
    )
    logger.info(
        "wrote transformers Llava to %s: %s projector as %s, strategy=%s, %d image tokens (id %d)",
        out, config.mm_projector_type, f"act={act}" if export is None else "remote code (trust_remote_code=True)",
        strategy, ours.num_image_tokens, image_token_id,
    )
    return out


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="our checkpoint folder (config.json model_type parrot_llava)")
    parser.add_argument("out", type=Path, help="folder to write the transformers Llava model and processor into")


TO_HF = Converter(
    name="to-hf",
    help="our checkpoint -> transformers' Llava + AutoProcessor (parrot_moe/pargo: plus remote code for the projector)",
    description=__doc__,
    add_arguments=_add_arguments,
    run=lambda args: convert_to_hf(args.checkpoint, args.out),
)
