"""`python -m llava.model.convert from-parrot SRC OUT`: an AIDC-AI Parrot checkpoint as one of ours.

OUT is a `parrot_llava` checkpoint with the `parrot_moe` projector set up to compute what their code
computes (see `parrot_moe.official_layout`): load, evaluate, serve or fine-tune it like any other.
Their config names the CLIP tower by path or hub id (`mm_vision_tower`); its config and image
processor are read from there, or from `--vision-tower DIR`. The tower's weights come from SRC when
SRC holds them (the released models do), else from that tower. The tokenizer gets `<|im_end|>` as its
end of sequence and `<|endoftext|>` as padding, as their loader sets them.

Registered with the core CLI through the `llava.converters` entry point `from-parrot`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from llava.model.convert.base import ConversionError, Converter, conversion_record, save_converted
from llava.model.convert.to_hf import read_model_type
from llava.model.convert.weights import empty_model, fill_into_empty, read_tensors, with_prefix
from parrot_moe.official_layout import MODEL_TYPE, VISION_PREFIX, our_settings, our_tensors, qwen2_fields

logger = logging.getLogger(__name__)

EOS_TOKEN, PAD_TOKEN = "<|im_end|>", "<|endoftext|>"


def _vision_parts(vision_tower: str, source: Path):
    from transformers import AutoImageProcessor

    from llava.model.multimodal_encoder.vision_tower import load_vision_config

    try:
        return load_vision_config(vision_tower), AutoImageProcessor.from_pretrained(vision_tower)
    except OSError as error:
        raise ConversionError(
            f"{source}: cannot read the vision tower {vision_tower!r} named by its mm_vision_tower ({error}); "
            "pass --vision-tower DIR with a local copy (openai/clip-vit-large-patch14-336 for Parrot-7B/14B)"
        ) from error


def _tokenizer(source: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    vocabulary = tokenizer.get_vocab()
    for token in (EOS_TOKEN, PAD_TOKEN):
        if token not in vocabulary:
            raise ConversionError(f"{source}: the tokenizer has no {token}; Parrot checkpoints ship Qwen2's tokenizer")
    tokenizer.eos_token, tokenizer.pad_token = EOS_TOKEN, PAD_TOKEN
    return tokenizer


def _tower_weights(vision_tower: str) -> dict:
    from transformers import AutoModel

    from llava.model.hub_kernels import hub_kernel_kwargs

    logger.info("the checkpoint holds no vision tower weights; taking them from %s", vision_tower)
    return AutoModel.from_pretrained(vision_tower, **hub_kernel_kwargs()).state_dict()


def convert_from_parrot(source: Path, out: Path, vision_tower: str | None = None) -> Path:
    """Write our checkpoint for the Parrot checkpoint `source` into `out`; returns `out`."""
    from transformers import AutoConfig

    from llava.model import LlavaConfig, LlavaForCausalLM

    source, out = Path(source), Path(out)
    model_type = read_model_type(source)
    if model_type != MODEL_TYPE:
        raise ConversionError(
            f"{source}/config.json: model_type {model_type!r} is not {MODEL_TYPE!r}; from-parrot reads AIDC-AI "
            "Parrot checkpoints (for transformers Llava folders use from-hf)"
        )
    raw = json.loads((source / "config.json").read_text(encoding="utf-8"))
    vision_tower = vision_tower or raw.get("mm_vision_tower")
    if not vision_tower:
        raise ConversionError(f"{source}/config.json names no mm_vision_tower; pass --vision-tower DIR")
    vision_config, image_processor = _vision_parts(str(vision_tower), source)
    config = LlavaConfig(
        text_config=AutoConfig.for_model("qwen2", **qwen2_fields(raw)).to_dict(),
        vision_config=vision_config.to_dict(),
        mm_vision_tower=str(vision_tower),
        **our_settings(raw, source),
    )
    model = empty_model(lambda: LlavaForCausalLM(config))
    tensors = read_tensors(source)
    state = our_tensors(tensors, raw, set(model.vision_tower.encoder.state_dict()), source)
    if not any(name.startswith(VISION_PREFIX) for name in tensors):
        state.update(with_prefix("vision_tower.encoder.", _tower_weights(str(vision_tower))))
    model = fill_into_empty(model, state, source)
    tokenizer = _tokenizer(source)
    for text_config in {id(c): c for c in (model.config.text_config, model.language_model.config)}.values():
        text_config.eos_token_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
        text_config.pad_token_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    options = ["--vision-tower", str(vision_tower)] if vision_tower != raw.get("mm_vision_tower") else []
    save_converted(out, model, tokenizer, image_processor, conversion_record("from-parrot", source, out, *options))
    logger.info("wrote %s (%s projector) from %s", out, config.mm_projector_type, source)
    return out


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="an AIDC-AI Parrot checkpoint folder (model_type parrot_qwen2)")
    parser.add_argument("out", type=Path, help="folder to write our checkpoint into")
    parser.add_argument(
        "--vision-tower", default=None,
        help="CLIP checkpoint (folder or hub id) for the tower's config and image processor; "
        "default: the mm_vision_tower in SRC's config.json",
    )


FROM_PARROT = Converter(
    name="from-parrot",
    help="AIDC-AI Parrot checkpoint (Parrot-7B/14B, model_type parrot_qwen2) -> our checkpoint",
    description=__doc__,
    add_arguments=_add_arguments,
    run=lambda args: convert_from_parrot(args.source, args.out, args.vision_tower),
)
