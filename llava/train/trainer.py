"""`LLaVATrainer`: HF Trainer plus per-module learning rates, modality-grouped batches, the
projector's auxiliary loss and per-image metrics (handed to `ProjectorMetricsCallback`s), the share
of LLM positions that hold sample tokens rather than padding, the fault handling of a long run (bad
steps skipped, preemption, crash-safe, verified and finite-only checkpoints, a full disk),
checkpoints in the run's save layout (the projector, and the tower if it trains, instead of the
whole frozen model), and our model card in place of the generic one (also before a Hub push).
"""

from __future__ import annotations

import copy
import logging
import os
from collections import defaultdict
from functools import partial

import torch
from torch.utils.data import DataLoader
from transformers import DefaultFlowCallback, Trainer
from transformers.trainer_pt_utils import get_parameter_names
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, seed_worker
from transformers.utils.hub import hf_api

from llava.constants import IMAGE_TOKEN_INDEX, MM_PROJECTOR_FILE, VISION_TOWER_FILE
from llava.model.builder import NON_LORA_TRAINABLES_FILE, load_non_lora_trainables
from llava.model.model_card import TrainingRecord, write_model_card
from llava.model.projector_io import read_projector_file
from llava.model.tower_io import load_vision_tower_weights
from llava.model.visual_tokens import merged_length
from llava.model.zero3 import load_state_dict_gathered
from llava.train.checkpoint_marker import COMPLETE_MARKER
from llava.train.checkpoints import is_partial, saved_layout
from llava.train.disk_full import stop_when_disk_full
from llava.train.finite_checks import check_weights_finite
from llava.train.preemption import TrainingPreempted
from llava.train.preflight import LaunchError
from llava.train.projector_metrics import ProjectorMetricsCallback
from llava.train.samplers import ModalityLengthGroupedSampler
from llava.train.save_layout import SaveLayout
from llava.train.saving import save_multimodal_parts
from llava.train.step_guard import StepGuard
from llava.train.trainer_callbacks import (
    CheckpointMarkerCallback,
    HeldScheduler,
    StepGuardCallback,
    checkpoint_dir,
)

logger = logging.getLogger(__name__)

def real_token_counts(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, num_image_tokens: int, max_length: int | None
) -> tuple[int, int]:
    """(sample tokens, all positions) the LLM computes for a right-padded batch (B, T): each `<image>`
    sentinel stands for `num_image_tokens` positions, and every row is as long as the longest one
    (at most `max_length`). Packed or not, the difference is padding."""
    per_row = merged_length(input_ids, num_image_tokens, attention_mask)
    width = int(per_row.max()) if len(per_row) else 0
    if max_length is not None:
        width = min(width, max_length)
    return int(per_row.clamp(max=width).sum()), width * len(per_row)


class LLaVATrainer(Trainer):
    """HF Trainer with per-module learning rates, modality-grouped batches, the projector's aux loss
    and metrics in the logs, LoRA checkpoints that keep the projector, and our model card
    (`model_card`: what the run knows beyond the config).

    Faults: `step_guard` (`llava.train.step_guard`) judges every optimizer step on all ranks
    together: a step with a non-finite loss or gradient norm is not applied, and a preemption
    signal ends the run after the step with a checkpoint (`preempted` then says which). Checkpoints
    are marked complete only once every rank has written them, with the size and SHA-256 of every
    file (`llava.train.checkpoint_marker`), and only if the weights are finite; a full disk while
    saving raises DiskFullError and leaves the previous checkpoint intact. These work through the
    Trainer's public extension points (`llava.train.trainer_callbacks`); the private methods still
    overridden below are listed, with the reason, in docs/transformers_private_names.md.

    `save_layout` (`llava.train.save_layout`, decided by train.py from what trains): checkpoints
    are written in it. A partial layout (the projector, and the vision tower if it trains) holds
    `mm_projector.bin` (upstream layout, usable as --pretrain_mm_mlp_adapter), `vision_tower.safetensors`
    and config.json beside the optimizer, scheduler, RNG and trainer state, not the frozen model and
    tokenizer; resuming rebuilds the frozen parts from --model_name_or_path as the first run did.
    """

    def __init__(
        self,
        model=None,
        args=None,
        *more,
        model_card: TrainingRecord | None = None,
        save_layout: SaveLayout = SaveLayout.FULL,
        step_guard: StepGuard | None = None,
        **kwargs,
    ):
        if args is None:
            raise ValueError("LLaVATrainer(args=...): pass the TrainingArguments (llava.train.arguments)")
        # HF rotates old checkpoints away inside its save, before ours is marked complete: it gets a
        # copy of the arguments without a limit, and `CheckpointMarkerCallback` rotates after marking
        self.checkpoint_limit = args.save_total_limit
        args = copy.copy(args)
        args.save_total_limit = None
        super().__init__(model, args, *more, **kwargs)
        if self.args.group_by_modality_length and (self.args.remove_unused_columns or self.args.auto_find_batch_size):
            raise ValueError(
                "--group_by_modality_length builds its own training DataLoader (LLaVATrainer.get_train_dataloader) "
                "and supports neither --remove_unused_columns True nor --auto_find_batch_size: drop those flags"
            )
        self.model_card = model_card
        self._aux_loss_sum, self._aux_loss_count = 0.0, 0
        self._real_tokens, self._all_tokens = 0, 0
        self.save_layout = save_layout
        self.step_guard = step_guard or StepGuard(self.args.max_bad_steps, self.args.output_dir)
        self.preempted: TrainingPreempted | None = None
        self.checkpoint_in_progress: str | None = None  # from its first file until its marker
        # right after DefaultFlowCallback (which sets the flags these revise), before the caller's
        # callbacks, so that their `on_save` sees a marked checkpoint
        callbacks = self.callback_handler.callbacks
        first = next((i + 1 for i, cb in enumerate(callbacks) if isinstance(cb, DefaultFlowCallback)), 0)
        callbacks[first:first] = [CheckpointMarkerCallback(self), StepGuardCallback(self)]

    def create_model_card(self, **kwargs) -> None:
        """Our card (`llava.model.model_card`) in `output_dir/README.md`, replacing the generic one the
        Trainer writes before every push; the Trainer's keyword arguments are not used."""
        if self.is_world_process_zero():
            model = self.accelerator.unwrap_model(self.model)
            config = (model.get_base_model() if self.is_lora else model).config
            write_model_card(self.args.output_dir, config, self.model_card)

    def push_output_dir(self, commit_message: str = "End of training"):
        """`--push_to_hub` at the end of a run: upload `output_dir` as it stands (weights, processors,
        card) to `--hub_model_id`, as `Trainer.push_to_hub` does but without saving the model again."""
        if not self.is_world_process_zero():
            return None
        if self.hub_model_id is None:
            self.init_hf_repo()
        self._finish_current_push()
        return hf_api().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=self.args.output_dir,
            commit_message=commit_message,
            token=self.args.hub_token,
            revision=self.args.hub_revision,
            ignore_patterns=["_*", f"{PREFIX_CHECKPOINT_DIR}-*"],
        )

    @property
    def projector_metric_callbacks(self) -> list[ProjectorMetricsCallback]:
        return [cb for cb in self.callback_handler.callbacks if isinstance(cb, ProjectorMetricsCallback)]

    def get_train_dataloader(self) -> DataLoader:
        """`--group_by_modality_length`: the Trainer's loader with `ModalityLengthGroupedSampler` (the
        same DataLoader arguments, prepared by accelerate, which shards it over the ranks)."""
        dataset = self.train_dataset
        if not (self.args.group_by_modality_length and hasattr(dataset, "lengths")):
            return super().get_train_dataloader()
        args = self.args
        batch = args.train_batch_size * args.gradient_accumulation_steps
        loader = DataLoader(
            dataset,
            batch_size=args.train_batch_size,
            sampler=ModalityLengthGroupedSampler(dataset.lengths, batch, args.world_size, seed=args.seed),
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            multiprocessing_context=args.dataloader_multiprocessing_context,
            prefetch_factor=args.dataloader_prefetch_factor,
            in_order=args.dataloader_in_order,
            drop_last=args.dataloader_drop_last,
            worker_init_fn=partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index),
        )
        return self.accelerator.prepare(loader)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The Trainer's scheduler, held on a bad step (`HeldScheduler`; DeepSpeed holds its own)."""
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if not self.is_deepspeed_enabled and HeldScheduler.applies_to(scheduler):
            self.lr_scheduler = HeldScheduler(scheduler, self.step_guard)
        return self.lr_scheduler

    def create_optimizer(self, model=None):
        """AdamW with separate learning rates for the projector (`--mm_projector_lr`) and the vision
        tower (`--mm_vision_tower_lr`); biases and norms get no weight decay."""
        if self.optimizer is not None:
            return self.optimizer
        model = self.model if model is None else model
        decay = set(get_parameter_names(model, [torch.nn.LayerNorm, torch.nn.Embedding]))
        decay = {n for n in decay if "bias" not in n and "norm" not in n}
        special = {"mm_projector.": self.args.mm_projector_lr, "vision_tower.": self.args.mm_vision_tower_lr}
        groups: dict[tuple[float | None, bool], list] = defaultdict(list)
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            lr = next((lr for prefix, lr in special.items() if prefix in name and lr is not None), None)
            groups[(lr, name in decay)].append(param)
        param_groups = []
        for (lr, has_decay), params in groups.items():
            group = {"params": params, "weight_decay": self.args.weight_decay if has_decay else 0.0}
            if lr is not None:
                group["lr"] = lr
            param_groups.append(group)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        image_langs = inputs.pop("image_langs", None)
        inputs.pop("ids", None)  # read by `training_step` for the step guard
        if model.training and "attention_mask" in inputs:
            real, total = real_token_counts(
                inputs["input_ids"], inputs["attention_mask"], self.model.num_image_tokens, self.args.model_max_length
            )
            self._real_tokens, self._all_tokens = self._real_tokens + real, self._all_tokens + total
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        aux = outputs.get("aux_loss")
        if aux is not None:
            self._aux_loss_sum += float(aux)
            self._aux_loss_count += 1
        metrics = outputs.get("projector_metrics")
        if metrics and model.training:
            if image_langs is None:
                image_langs = [None] * int((inputs["input_ids"] == IMAGE_TOKEN_INDEX).sum())
            for callback in self.projector_metric_callbacks:
                callback.on_projector_metrics(metrics, image_langs)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        ids = inputs.get("ids")
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.step_guard.record(ids, loss)
        return loss

    @property
    def uses_loss_scaling(self) -> bool:
        """An fp16 loss scaler is active (DeepSpeed's or torch's): its overflow skips are its own."""
        if self.is_deepspeed_enabled:
            return self.model_wrapped.fp16_enabled()
        return self.accelerator.scaler is not None

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs:
            if self._aux_loss_count:
                logs["aux_loss"] = round(self._aux_loss_sum / self._aux_loss_count, 6)
                self._aux_loss_sum, self._aux_loss_count = 0.0, 0
            if self._all_tokens:
                logs["real_token_fraction"] = round(self._real_tokens / self._all_tokens, 4)
                self._real_tokens, self._all_tokens = 0, 0
            for callback in self.projector_metric_callbacks:
                logs.update(callback.pop_logs())
        super().log(logs, *args, **kwargs)

    # ---- checkpoints ------------------------------------------------------------------------
    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def train(self, *args, **kwargs):
        """A full disk while a checkpoint is written raises DiskFullError (`llava.train.disk_full`): the
        partial checkpoint is removed, the previous complete one is intact."""
        try:
            return super().train(*args, **kwargs)
        except OSError:
            target, self.checkpoint_in_progress = self.checkpoint_in_progress, None
            if target is None:
                raise
            with stop_when_disk_full(target, self.args.output_dir, f"checkpoint {target}", self.args.should_save):
                raise

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """A checkpoint's first write: non-finite weights are refused before anything is written, and
        a marker left in its folder by an earlier run is removed (`CheckpointMarkerCallback` writes the
        new one once every file is there)."""
        if _internal_call and output_dir == checkpoint_dir(self.args.output_dir, self.state.global_step):
            check_weights_finite(self.model, self.args.device, f"checkpoint {output_dir}")
            self.checkpoint_in_progress = output_dir
            stale_marker = os.path.join(output_dir, COMPLETE_MARKER)
            if self.args.should_save and os.path.exists(stale_marker):
                os.remove(stale_marker)
        if _internal_call and self.save_layout.is_partial:
            save_multimodal_parts(self, self.save_layout, output_dir or self.args.output_dir)
            return
        super().save_model(output_dir, _internal_call)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """DeepSpeed's own checkpoint of a partial layout leaves the frozen weights out too."""
        if not (self.save_layout.is_partial and self.is_deepspeed_enabled):
            super()._save_optimizer_and_scheduler(output_dir)
            return
        from accelerate.utils import DeepSpeedSchedulerWrapper
        from transformers.trainer import SCHEDULER_NAME

        self.model_wrapped.save_checkpoint(output_dir, exclude_frozen_parameters=True)
        if self.args.should_save and not isinstance(self.lr_scheduler, DeepSpeedSchedulerWrapper):
            torch.save(self.lr_scheduler.state_dict(), os.path.join(output_dir, SCHEDULER_NAME))

    def _prepare_for_training(self, max_steps, train_dataloader, resume_from_checkpoint):
        """Under DeepSpeed HF resumes strictly; a partial checkpoint's module state holds just the
        trainable weights, so it is loaded non-strictly once the engine exists."""
        if not (self.is_deepspeed_enabled and resume_from_checkpoint and is_partial(resume_from_checkpoint)):
            return super()._prepare_for_training(max_steps, train_dataloader, resume_from_checkpoint)
        prepared = super()._prepare_for_training(max_steps, train_dataloader, None)
        self.model_wrapped.load_checkpoint(
            resume_from_checkpoint, load_module_strict=False, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        self._load_optimizer_and_scheduler(resume_from_checkpoint)
        self._load_scaler(resume_from_checkpoint)
        return prepared

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """A partial checkpoint restores the projector (all of it) and the vision tower if it holds
        it; HF restores only the adapter of a LoRA model, and the projector comes from the file beside it."""
        target = self.model if model is None else model
        layout = saved_layout(resume_from_checkpoint)
        if layout is SaveLayout.PROJECTOR and self.save_layout is SaveLayout.PROJECTOR_AND_TOWER:
            raise LaunchError(
                f"--resume_from_checkpoint {resume_from_checkpoint} holds the projector only, but this run trains "
                "the vision tower too (--unfreeze_mm_vision_tower True): its tower would restart from the pretrained "
                "one; resume with the flags of the run that wrote it, or start fresh (--resume_from_checkpoint False)"
            )
        if layout.is_partial:
            unwrapped = self.accelerator.unwrap_model(target)
            weights = read_projector_file(os.path.join(resume_from_checkpoint, MM_PROJECTOR_FILE))
            load_state_dict_gathered(unwrapped.mm_projector, weights, strict=True)
            if layout is SaveLayout.PROJECTOR_AND_TOWER:
                load_vision_tower_weights(unwrapped.vision_tower, os.path.join(resume_from_checkpoint, VISION_TOWER_FILE))
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        non_lora = os.path.join(resume_from_checkpoint, NON_LORA_TRAINABLES_FILE)
        if hasattr(target, "peft_config") and os.path.isfile(non_lora):
            load_non_lora_trainables(target.get_base_model(), non_lora)
