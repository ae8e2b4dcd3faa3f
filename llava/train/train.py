"""Train a LLaVA-style model: `python llava/train/train.py ...`, `python -m llava.train.train ...`,
`torchrun ... llava/train/train.py ...` or `deepspeed llava/train/train_mem.py ...`.

Accepts upstream LLaVA-1.5's flags (see README) plus the flags a projector plugin declares.
"""

from __future__ import annotations

import logging
import os
import sys

import torch
import transformers
from transformers import HfArgumentParser

from llava.conversation import get_conv_template
from llava.data.collator import DataCollatorForSupervisedDataset
from llava.data.dataset import DataConfig, LazySupervisedDataset, SkipLog
from llava.model.multimodal_projector.builder import get_projector_factory
from llava.optional import require_deepspeed, require_wandb
from llava.train.arguments import DataArguments, ModelArguments, TrainingArguments, normalize_argv
from llava.train.model_setup import build_model, check_paths, configure_trainable
from llava.train.saving import save_full_model, save_stage1_projector
from llava.train.trainer import LLaVATrainer

logger = logging.getLogger("llava.train")


def _projector_type(argv: list[str]) -> str:
    for i, token in enumerate(argv):
        if token == "--mm_projector_type" and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith("--mm_projector_type="):
            return token.split("=", 1)[1]
    return ModelArguments.mm_projector_type


def parse_args(argv: list[str]):
    """(model_args, data_args, training_args, projector_args). A plugin projector may declare its
    own flags as a dataclass in its factory's `arguments` attribute; they are parsed here and saved
    in the model config under the same names."""
    argv = normalize_argv(argv)
    projector_arguments = getattr(get_projector_factory(_projector_type(argv)), "arguments", None)
    dataclass_types = [ModelArguments, DataArguments, TrainingArguments]
    if projector_arguments is not None:
        dataclass_types.append(projector_arguments)
    *parsed, unknown = HfArgumentParser(dataclass_types).parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    if unknown:
        raise ValueError(
            f"unknown flags {unknown}: neither llava/train/train.py nor the projector "
            f"'--mm_projector_type {_projector_type(argv)}' accepts them (plugin flags such as --moe_* "
            "need their plugin's projector type)"
        )
    projector_args = parsed[3] if projector_arguments is not None else None
    return parsed[0], parsed[1], parsed[2], projector_args


def _setup_logging(training_args) -> None:
    level = training_args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("llava").setLevel(level)
    transformers.utils.logging.set_verbosity(level)


def train(argv: list[str] | None = None, attn_implementation: str | None = None) -> LLaVATrainer:
    argv = sys.argv[1:] if argv is None else list(argv)
    model_args, data_args, training_args, projector_args = parse_args(argv)
    _setup_logging(training_args)
    if attn_implementation and model_args.attn_implementation is None:
        model_args.attn_implementation = attn_implementation
    check_paths(model_args, data_args)
    if training_args.deepspeed:
        require_deepspeed()
    if "wandb" in (training_args.report_to or []):
        require_wandb()
    if not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False
    if training_args.gradient_checkpointing and training_args.gradient_checkpointing_kwargs is None:
        # Non-reentrant checkpointing lets gradients reach a trainable projector under a frozen LLM.
        training_args.gradient_checkpointing_kwargs = {"use_reentrant": False}

    model, tokenizer, image_processor = build_model(model_args, data_args, training_args, projector_args)
    configure_trainable(model, model_args, training_args)

    skip_log = SkipLog(os.path.join(training_args.output_dir, "skipped_samples.jsonl"), strict=data_args.strict_data)
    if training_args.should_save and os.path.exists(skip_log.path):
        os.remove(skip_log.path)
    data_config = DataConfig(
        template=get_conv_template(model_args.version),
        image_folder=data_args.image_folder,
        image_processor=image_processor,
        image_aspect_ratio=data_args.image_aspect_ratio,
        model_max_length=training_args.model_max_length,
        num_image_tokens=model.num_image_tokens,
        mm_use_im_start_end=model_args.mm_use_im_start_end,
    )
    dataset = LazySupervisedDataset(data_args.data_path, tokenizer, data_config, skip_log)
    trainer = LLaVATrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=DataCollatorForSupervisedDataset(pad_token_id=tokenizer.pad_token_id),
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_state()
    if model_args.tune_mm_mlp_adapter:
        save_stage1_projector(trainer, training_args.output_dir)
    else:
        save_full_model(trainer, training_args.output_dir, tokenizer, image_processor)
    skipped = skip_log.summary()
    if skipped:
        logger.warning("skipped %d data items: %s (details: %s)", sum(skipped.values()), dict(skipped), skip_log.path)
    else:
        logger.info("no data items were skipped")
    return trainer


if __name__ == "__main__":
    train()
