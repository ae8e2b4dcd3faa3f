"""Writing training results in the run's `SaveLayout` (`llava.train.save_layout`): the projector in
upstream layout (with the vision tower beside it when that trained too), a LoRA adapter with what
trained beside it, or the full checkpoint. Every rank calls these (ZeRO-3 gathers are collective);
only the main process writes."""

from __future__ import annotations

import logging
import os

import torch

from llava.constants import MM_PROJECTOR_FILE, VISION_TOWER_FILE
from llava.model.projector_io import projector_state_dict_for_upstream
from llava.model.tower_io import save_vision_tower
from llava.train.lora import save_non_lora_trainables
from llava.train.save_layout import SaveLayout

logger = logging.getLogger(__name__)


def save_trained(trainer, layout: SaveLayout, output_dir: str, tokenizer, image_processor) -> None:
    """The final save of a run: `output_dir` in `layout`."""
    if layout.is_partial:
        save_multimodal_parts(trainer, layout, output_dir)
    elif layout is SaveLayout.LORA:
        save_lora_model(trainer, output_dir, tokenizer, image_processor)
    else:
        save_full_model(trainer, output_dir, tokenizer, image_processor)


def save_multimodal_parts(trainer, layout: SaveLayout, output_dir: str) -> None:
    """`output_dir/mm_projector.bin` (keys `model.mm_projector.*`), `config.json` and, for
    `PROJECTOR_AND_TOWER`, `vision_tower.safetensors`; the frozen LLM is not written."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    state = projector_state_dict_for_upstream(model.mm_projector)
    path = os.path.join(output_dir, MM_PROJECTOR_FILE)
    if layout is SaveLayout.PROJECTOR_AND_TOWER:
        save_vision_tower(model.vision_tower, os.path.join(output_dir, VISION_TOWER_FILE), trainer.args.should_save)
    if trainer.args.should_save:
        os.makedirs(output_dir, exist_ok=True)
        torch.save(state, path)
        model.config.save_pretrained(output_dir)
        logger.info("saved projector (%d tensors) to %s (layout %s)", len(state), path, layout.value)


def save_full_model(trainer, output_dir: str, tokenizer, image_processor) -> None:
    """Safetensors weights, config, tokenizer and image processor: a self-contained checkpoint.

    Under ZeRO-3 the weights are consolidated from all ranks (`stage3_gather_16bit_weights_on_model_save`
    in scripts/zero3*.json); with that setting off, HF writes a ZeRO checkpoint instead.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.config.use_cache = True
    model.language_model.config.use_cache = True
    trainer.save_model(output_dir, _internal_call=True)  # pushed once complete, by LLaVATrainer.push_output_dir
    _save_processors(trainer, output_dir, tokenizer, image_processor)


def save_lora_model(trainer, output_dir: str, tokenizer, image_processor) -> None:
    """Adapter (`adapter_config.json`, `adapter_model.safetensors`), `non_lora_trainables.safetensors`,
    the multimodal `config.json`, tokenizer and image processor. Load it with
    `load_pretrained_model(output_dir, model_base=<the LLM>)` or merge it with scripts/merge_lora_weights.py."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    base = model.get_base_model()
    base.config.use_cache = True
    base.language_model.config.use_cache = True
    trainer.save_model(output_dir, _internal_call=True)  # pushed once complete, by LLaVATrainer.push_output_dir
    save_non_lora_trainables(model, output_dir, trainer.args.should_save)
    if trainer.args.should_save:
        base.config.save_pretrained(output_dir)
    _save_processors(trainer, output_dir, tokenizer, image_processor)


def _save_processors(trainer, output_dir: str, tokenizer, image_processor) -> None:
    if not trainer.args.should_save:
        return
    tokenizer.save_pretrained(output_dir)
    if image_processor is not None:
        image_processor.save_pretrained(output_dir)
    logger.info("saved model, tokenizer and image processor to %s", output_dir)
