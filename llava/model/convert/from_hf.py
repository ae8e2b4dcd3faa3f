"""`from-hf SRC OUT`: a transformers-native Llava folder (`llava-hf/*`, or `to-hf` output) as our checkpoint.

OUT is what `llava.train.train` writes: continue training with `--model_name_or_path OUT`, evaluate or
serve it like any other. The conversation template is recognised by rendering a probe conversation
through SRC's chat template and comparing it with ours (`--conv-template` when none matches). The
tokenizer is kept as it is, `<image>` token included: our prompts mark images with a sentinel id
instead, so that token is simply never produced. A remote-code folder that `to-hf` wrote (parrot_moe,
pargo) comes back exactly: see `llava.model.convert.from_remote`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from llava.model.convert.base import ConversionError, Converter, conversion_record, save_converted
from llava.model.convert.chat_template import matching_template
from llava.model.convert.hf_llava import projector_from_hf, select_feature
from llava.model.convert.remote import REMOTE_MODEL_TYPE
from llava.model.convert.to_hf import read_model_type
from llava.model.convert.weights import empty_model, fill_into_empty, load_pretrained_strictly, with_prefix

logger = logging.getLogger(__name__)


def _conversation_template(source: Path, tokenizer, requested: str | None) -> str | None:
    from llava.conversation import conv_templates

    if requested is not None:
        if requested not in conv_templates:
            raise ConversionError(f"--conv-template {requested!r}: choose one of {', '.join(sorted(conv_templates))}")
        return requested
    template = getattr(tokenizer, "chat_template", None)
    if template:
        found = matching_template(
            lambda messages: tokenizer.apply_chat_template(
                messages, chat_template=template, tokenize=False, add_generation_prompt=True
            ).removeprefix(tokenizer.bos_token or "\0")
        )
        if found:
            return found
    logger.warning(
        "%s: its chat template matches none of ours; the checkpoint will chat in ChatML unless you pass "
        "--conv-template (training takes --version anyway)", source,
    )
    return None


def _image_settings(image_processor) -> tuple[object, str]:
    """(processor for our pipeline, image_aspect_ratio): Llava's own padding becomes our `pad`."""
    if getattr(image_processor, "do_pad", False):
        image_processor.do_pad = False
        return image_processor, "pad"
    return image_processor, "square"


def convert_from_hf(source: Path, out: Path, conv_template: str | None = None) -> Path:
    """Write our checkpoint for the transformers Llava folder `source` into `out`; returns `out`."""
    from transformers import AutoImageProcessor, AutoTokenizer, LlavaForConditionalGeneration

    from llava.model import LlavaConfig, LlavaForCausalLM

    source, out = Path(source), Path(out)
    model_type = read_model_type(source)
    if model_type == REMOTE_MODEL_TYPE:
        from llava.model.convert.from_remote import convert_from_remote

        return convert_from_remote(source, out, conv_template)
    if model_type != "llava":
        raise ConversionError(
            f"{source}/config.json: model_type {model_type!r} is not transformers' 'llava'; from-hf reads "
            f"LlavaForConditionalGeneration folders (llava-hf/llava-1.5-*, or to-hf output) and to-hf's "
            f"remote-code folders ({REMOTE_MODEL_TYPE!r})"
        )
    hf_model = load_pretrained_strictly(LlavaForConditionalGeneration, source)
    hf_config = hf_model.config
    if not isinstance(hf_config.vision_feature_layer, int):
        raise ConversionError(
            f"{source}: vision_feature_layer {hf_config.vision_feature_layer} concatenates several layers; "
            "our vision tower selects one (--mm_vision_select_layer)"
        )
    projector_type, projector = projector_from_hf(
        hf_config.projector_hidden_act, hf_model.model.multi_modal_projector.state_dict(), source
    )
    tokenizer = AutoTokenizer.from_pretrained(source)
    image_processor, aspect_ratio = _image_settings(AutoImageProcessor.from_pretrained(source))
    config = LlavaConfig(
        text_config=hf_config.text_config.to_dict(),
        vision_config=hf_config.vision_config.to_dict(),
        mm_projector_type=projector_type,
        mm_vision_select_layer=hf_config.vision_feature_layer,
        mm_vision_select_feature=select_feature(
            hf_config.vision_feature_select_strategy, hf_config.vision_config, source
        ),
        image_aspect_ratio=aspect_ratio,
        conv_template=_conversation_template(source, tokenizer, conv_template),
        tokenizer_padding_side=tokenizer.padding_side,
    )
    ours = empty_model(lambda: LlavaForCausalLM(config))
    state = {
        **with_prefix(f"language_model.{ours.language_model.base_model_prefix}.", hf_model.model.language_model.state_dict()),
        **with_prefix("language_model.lm_head.", hf_model.lm_head.state_dict()),
        **with_prefix("vision_tower.encoder.", hf_model.model.vision_tower.state_dict()),
        **with_prefix("mm_projector.", projector),
    }
    ours = fill_into_empty(ours, state, source)
    ours.language_model.generation_config = hf_model.generation_config
    options = ["--conv-template", conv_template] if conv_template else []
    save_converted(out, ours, tokenizer, image_processor, conversion_record("from-hf", source, out, *options))
    logger.info(
        "wrote our checkpoint to %s: %s projector, %s, template %s", out, projector_type,
        config.mm_vision_select_feature, config.conv_template,
    )
    return out


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="a transformers Llava folder (config.json model_type llava), or a remote-code folder to-hf wrote")
    parser.add_argument("out", type=Path, help="folder to write our checkpoint into")
    parser.add_argument(
        "--conv-template", default=None,
        help="our conversation template (--version) when SRC's chat template matches none of ours",
    )


FROM_HF = Converter(
    name="from-hf",
    help="transformers' LlavaForConditionalGeneration folder -> our checkpoint (to continue training here)",
    description=__doc__,
    add_arguments=_add_arguments,
    run=lambda args: convert_from_hf(args.source, args.out, args.conv_template),
)
