"""`from-hf` for a remote-code folder that `to-hf` wrote (config.json model_type `parrot_llava_remote`).

The folder keeps our config's fields (`parrot_config`), so the checkpoint comes back exactly: the same
config, the same tensors (the projector's keys renamed back, the `<image>` embedding row that `to-hf`
added dropped again). The tokenizer is the folder's, `<image>` token included: our prompts mark images
with a sentinel id, so that token is never produced.
"""

from __future__ import annotations

import logging
from pathlib import Path

from llava.model.convert.base import ConversionError, conversion_record, save_converted
from llava.model.convert.remote import export_of, remote_classes
from llava.model.convert.weights import empty_model, fill_into_empty, load_pretrained_strictly, with_prefix

logger = logging.getLogger(__name__)


def convert_from_remote(source: Path, out: Path, conv_template: str | None = None) -> Path:
    """Write our checkpoint for the to-hf remote-code folder `source` into `out`; returns `out`."""
    from transformers import AutoImageProcessor, AutoTokenizer

    from llava.model import LlavaConfig, LlavaForCausalLM

    _, model_class = remote_classes(source)
    hf_model = load_pretrained_strictly(model_class, source, trust_remote_code=True)
    hf_config = hf_model.config
    fields = dict(hf_config.parrot_config or {})
    vocab = fields.pop("source_vocab_size", None)
    if not fields or vocab is None:
        raise ConversionError(
            f"{source}/config.json: no parrot_config with source_vocab_size; only folders that "
            "`python -m llava.model.convert to-hf` wrote can be read back"
        )
    if conv_template is not None:
        fields["conv_template"] = conv_template
    text_config = hf_config.text_config.to_dict()
    text_config["vocab_size"] = vocab
    config = LlavaConfig(text_config=text_config, vision_config=hf_config.vision_config.to_dict(), **fields)
    ours = empty_model(lambda: LlavaForCausalLM(config))
    # The projector's export, built again from our model as to-hf built it, renames its keys back.
    export = export_of(config.mm_projector_type, ours.mm_projector, ours.vision_tower.num_patches)
    projector = export.our_keys(hf_model.model.multi_modal_projector.state_dict())
    language = {
        **with_prefix(f"language_model.{ours.language_model.base_model_prefix}.", hf_model.model.language_model.state_dict()),
        **with_prefix("language_model.lm_head.", hf_model.lm_head.state_dict()),
    }
    # Rows past the source vocabulary are the `<image>` placeholder that to-hf added.
    language = {
        key: tensor[:vocab] if key.endswith(("embed_tokens.weight", "lm_head.weight")) else tensor
        for key, tensor in language.items()
    }
    state = {
        **language,
        **with_prefix("vision_tower.encoder.", hf_model.model.vision_tower.state_dict()),
        **with_prefix("mm_projector.", projector),
    }
    ours = fill_into_empty(ours, state, source)
    ours.language_model.generation_config = hf_model.generation_config
    tokenizer = AutoTokenizer.from_pretrained(source)
    image_processor = AutoImageProcessor.from_pretrained(source)
    if getattr(image_processor, "do_pad", False):
        image_processor.do_pad = False  # our pipeline pads itself under image_aspect_ratio pad
    options = ["--conv-template", conv_template] if conv_template else []
    save_converted(out, ours, tokenizer, image_processor, conversion_record("from-hf", source, out, *options))
    logger.info("wrote our checkpoint to %s: %s projector from remote code", out, config.mm_projector_type)
    return out
