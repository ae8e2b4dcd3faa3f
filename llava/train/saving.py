"""Writing training results: the stage-1 projector in upstream layout, or the full checkpoint."""

from __future__ import annotations

import logging
import os

import torch

from llava.constants import MM_PROJECTOR_FILE
from llava.model.projector_io import projector_state_dict_for_upstream

logger = logging.getLogger(__name__)


def save_stage1_projector(trainer, output_dir: str) -> str:
    """`output_dir/mm_projector.bin` (keys `model.mm_projector.*`) plus `config.json`."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    state = projector_state_dict_for_upstream(model.mm_projector)
    path = os.path.join(output_dir, MM_PROJECTOR_FILE)
    if trainer.args.should_save:
        os.makedirs(output_dir, exist_ok=True)
        torch.save(state, path)
        model.config.save_pretrained(output_dir)
        logger.info("saved stage-1 projector (%d tensors) to %s", len(state), path)
    return path


def save_full_model(trainer, output_dir: str, tokenizer, image_processor) -> None:
    """Safetensors weights, config, tokenizer and image processor: a self-contained checkpoint."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.config.use_cache = True
    model.language_model.config.use_cache = True
    trainer.save_model(output_dir)
    if trainer.args.should_save:
        tokenizer.save_pretrained(output_dir)
        if image_processor is not None:
            image_processor.save_pretrained(output_dir)
        logger.info("saved model, tokenizer and image processor to %s", output_dir)
