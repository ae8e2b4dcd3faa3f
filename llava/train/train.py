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
from llava.data.collator import DataCollatorForPackedDataset, DataCollatorForSupervisedDataset
from llava.data.dataset import DataConfig, LazySupervisedDataset, SkipLog
from llava.data.mixture import MixtureError
from llava.data.packing import PackedDataset
from llava.model.model_card import TrainingRecord, languages_of
from llava.model.multimodal_projector.builder import get_projector_spec, projector_argument_types
from llava.optional import require_wandb
from llava.train.arguments import (
    DataArguments,
    ModelArguments,
    TrainingArguments,
    UpstreamCompatArguments,
    flag_value,
    normalize_argv,
    warn_inert_flags,
)
from llava.train.checkpoints import choose_resume_checkpoint, remove_incomplete_checkpoints
from llava.train.composition import CompositionToWandb
from llava.train.disk_full import DiskFullError, stop_when_disk_full
from llava.train.finite_checks import NonFiniteTrainingError, check_weights_finite
from llava.train.launch_env import ensure_single_process_env
from llava.train.lora import apply_lora
from llava.train.model_setup import build_model, check_paths, configure_trainable
from llava.train.output_guard import guard_training_output_dir
from llava.train.preemption import PREEMPTED_EXIT_CODE, PreemptionListener, TrainingPreempted, parse_signals
from llava.train.preflight import (
    LaunchError,
    check_argv,
    check_model_args,
    check_packing_attention,
    check_training_args,
)
from llava.train.save_layout import decide_save_layout
from llava.train.saving import save_trained
from llava.train.step_guard import StepGuard
from llava.train.trainer import LLaVATrainer

logger = logging.getLogger("llava.train")


def parse_args(argv: list[str]):
    """(model_args, data_args, training_args, projector_args). A plugin projector may declare its
    own flags as a dataclass (`ProjectorSpec.arguments`), and so may a projector it stacks on
    (`ProjectorSpec.stacks_on`); they are parsed here, `projector_args` lists one instance per
    dataclass, and every value is saved in the model config under its flag's name."""
    argv = normalize_argv(argv)
    projector_type = flag_value(argv, "--mm_projector_type", ModelArguments.mm_projector_type)
    try:
        projector_types = projector_argument_types(projector_type, lambda name, default: flag_value(argv, f"--{name}", default))
    except ValueError as err:
        raise LaunchError(str(err)) from None
    try:
        *parsed, unknown = HfArgumentParser(
            [ModelArguments, DataArguments, TrainingArguments, UpstreamCompatArguments, *projector_types]
        ).parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as err:  # a flag value the arguments' own validation refused
        raise LaunchError(str(err)) from None
    if unknown:
        raise LaunchError(
            f"unknown flags {unknown}: neither llava/train/train.py nor the projector "
            f"'--mm_projector_type {projector_type}' (nor one it stacks on) accepts them; plugin flags such as "
            "--moe_* or --pargo_* need their plugin's projector type (or, under parrot_moe, --moe_base_projector)"
        )
    warn_inert_flags(argv, parsed[2])
    return parsed[0], parsed[1], parsed[2], parsed[4:]  # parsed[3]: UpstreamCompatArguments, only logged


def _setup_logging(training_args) -> None:
    level = training_args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("llava").setLevel(level)
    transformers.utils.logging.set_verbosity(level)


def _prepare_launch(argv: list[str], attn_implementation: str | None):
    """Every check that can fail before anything heavy loads; returns the parsed arguments, the
    preemption listener and the checkpoint to resume from (None for a fresh run)."""
    check_argv(argv)
    ensure_single_process_env(argv)
    model_args, data_args, training_args, projector_args = parse_args(argv)
    _setup_logging(training_args)
    check_training_args(training_args)
    check_model_args(model_args, data_args)
    listener = PreemptionListener(parse_signals(training_args.preemption_signals))
    if attn_implementation and model_args.attn_implementation is None:
        model_args.attn_implementation = attn_implementation
    check_paths(model_args, data_args)
    if "wandb" in (training_args.report_to or []):
        require_wandb()
    if not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False
    if training_args.gradient_checkpointing and training_args.gradient_checkpointing_kwargs is None:
        # Non-reentrant checkpointing lets gradients reach a trainable projector under a frozen LLM,
        # and LoRA adapters on text-only batches whose (frozen) input embeddings need no grad.
        training_args.gradient_checkpointing_kwargs = {"use_reentrant": False}
    guard_training_output_dir(training_args)  # a finished run is not overwritten silently
    resume_from = choose_resume_checkpoint(
        training_args.resume_from_checkpoint,
        training_args.output_dir,
        training_args.auto_resume,
        checksums=training_args.resume_verification == "sha256",
    )
    if resume_from is not None and training_args.should_save:
        remove_incomplete_checkpoints(training_args.output_dir)
    return (model_args, data_args, training_args, projector_args), listener, resume_from


def _training_data(model, tokenizer, image_processor, model_args, data_args, training_args):
    """(dataset, what the Trainer iterates, its collator, the skipped-items log): packed or not."""
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
        seed=training_args.seed,
    )
    dataset = LazySupervisedDataset(data_args.data_path, tokenizer, data_config, skip_log)
    if not training_args.packing:
        return dataset, dataset, DataCollatorForSupervisedDataset(pad_token_id=tokenizer.pad_token_id), skip_log
    check_packing_attention(model)
    packed = PackedDataset(
        dataset,
        training_args.model_max_length,
        seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
        shuffle=training_args.train_sampling_strategy != "sequential",
        rows_multiple=training_args.per_device_train_batch_size * training_args.world_size,
        group_by_modality=training_args.group_by_modality_length,
        show_progress=training_args.should_log,
    )
    return dataset, packed, DataCollatorForPackedDataset(pad_token_id=tokenizer.pad_token_id), skip_log


def _train_and_save(trainer, training_args, listener, resume_from, save_layout, tokenizer, image_processor) -> None:
    """Train, then write the output in the layout decided before the first step (a signal during the
    final save is noted and the save completes), and push it if asked."""
    out = training_args.output_dir
    with listener:
        trainer.train(resume_from_checkpoint=resume_from)
        if trainer.preempted is not None:
            raise trainer.preempted
        check_weights_finite(trainer.model, training_args.device, f"saving the trained weights to {out}")
        with stop_when_disk_full(out, out, f"saving the trained model to {out}", remove_partial=False):
            trainer.save_state()
            save_trained(trainer, save_layout, out, tokenizer, image_processor)
            trainer.create_model_card()
    if training_args.push_to_hub:
        trainer.push_output_dir()


def train(
    argv: list[str] | None = None,
    attn_implementation: str | None = None,
    callbacks: list[transformers.TrainerCallback] | None = None,
) -> LLaVATrainer:
    """Run one training stage from command-line flags; returns the trainer (its model is trained).

    Raises `LaunchError` for setup problems (missing dependency, incompatible flags, bad resume
    path) before anything heavy is loaded; the command line prints those without a traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    (model_args, data_args, training_args, projector_args), listener, resume_from = _prepare_launch(
        argv, attn_implementation
    )
    # Seed before building: a projector's random init must be the same in every run with this seed.
    transformers.set_seed(training_args.seed)
    model, tokenizer, image_processor = build_model(model_args, data_args, training_args, projector_args)
    configure_trainable(model, model_args, training_args)
    projector_callbacks = get_projector_spec(model.config.mm_projector_type).make_callbacks() if model.config.has_vision else []
    if training_args.lora_enable:
        model = apply_lora(model, training_args)
    save_layout = decide_save_layout(model, model_args, training_args)
    dataset, train_dataset, collator, skip_log = _training_data(
        model, tokenizer, image_processor, model_args, data_args, training_args
    )
    if "wandb" in (training_args.report_to or []):
        callbacks = [*(callbacks or []), CompositionToWandb(dataset.composition)]
    trainer = LLaVATrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[*(callbacks or []), *projector_callbacks],
        model_card=TrainingRecord(model_args.model_name_or_path, languages_of(dataset.items), argv),
        save_layout=save_layout,
        step_guard=StepGuard(training_args.max_bad_steps, training_args.output_dir, listener),
    )
    _train_and_save(trainer, training_args, listener, resume_from, save_layout, tokenizer, image_processor)
    skipped = skip_log.summary()
    if skipped:
        logger.warning("skipped %d data items: %s (details: %s)", sum(skipped.values()), dict(skipped), skip_log.path)
    else:
        logger.info("no data items were skipped")
    return trainer


def main(
    argv: list[str] | None = None,
    attn_implementation: str | None = None,
    callbacks: list[transformers.TrainerCallback] | None = None,
) -> LLaVATrainer:
    """Command-line entry: `train`, returning its trainer; otherwise the exit status says what
    happened, with an actionable message and no traceback:

    - 0: trained and saved;
    - 1: the run stopped on a fault it cannot train through: `--max_bad_steps` bad steps in a row,
      non-finite weights, a full disk while saving (the previous checkpoint is intact);
    - 2: a setup problem found before training (a flag, a path, no intact checkpoint to resume from);
    - 75 (`PREEMPTED_EXIT_CODE`): a preemption signal; a checkpoint was written, rerun to resume.
    """
    try:
        return train(argv, attn_implementation=attn_implementation, callbacks=callbacks)
    except (LaunchError, FileNotFoundError, MixtureError) as err:
        print(f"llava.train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except (NonFiniteTrainingError, DiskFullError) as err:
        print(f"llava.train: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except TrainingPreempted as stop:
        print(f"llava.train: {stop}", file=sys.stderr)
        raise SystemExit(PREEMPTED_EXIT_CODE) from None


if __name__ == "__main__":
    main()
