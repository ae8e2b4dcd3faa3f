"""`LLaVATrainer`: HF Trainer plus per-module learning rates, modality-grouped batches, the
projector's auxiliary loss and per-image metrics (handed to `ProjectorMetricsCallback`s), and
crash-safe checkpoints.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict

import torch
from torch.utils.data import Sampler
from transformers import Trainer
from transformers.trainer_pt_utils import get_parameter_names
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from llava.model.builder import NON_LORA_TRAINABLES_FILE, load_non_lora_trainables
from llava.model.multimodal_merge import image_owner
from llava.train.checkpoints import COMPLETE_MARKER, mark_complete
from llava.train.lora import save_non_lora_trainables
from llava.train.projector_metrics import ProjectorMetricsCallback

logger = logging.getLogger(__name__)

METADATA_KEYS = ("langs",)


def modality_grouped_indices(lengths: list[int], batch_size: int, world_size: int, generator=None) -> list[int]:
    """Indices such that every global batch is all-multimodal (length > 0) or all text-only (< 0),
    with similar lengths inside each batch; batch order is random. Mixed leftovers go last."""
    def grouped(indices: list[int]) -> list[list[int]]:
        if not indices:
            return []
        perm = [indices[i] for i in torch.randperm(len(indices), generator=generator)]
        mega = batch_size * world_size
        chunks = [perm[i : i + mega] for i in range(0, len(perm), mega)]
        return [sorted(c, key=lambda i: -abs(lengths[i])) for c in chunks]

    multimodal = grouped([i for i, n in enumerate(lengths) if n > 0])
    text_only = grouped([i for i, n in enumerate(lengths) if n <= 0])
    full = [c for c in multimodal + text_only if len(c) == batch_size * world_size]
    partial = [i for c in multimodal + text_only if len(c) != batch_size * world_size for i in c]
    order = torch.randperm(len(full), generator=generator).tolist()
    return [i for j in order for i in full[j]] + partial


class ModalityLengthGroupedSampler(Sampler):
    def __init__(self, lengths: list[int], batch_size: int, world_size: int, seed: int = 0):
        self.lengths, self.batch_size, self.world_size, self.seed = lengths, batch_size, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_grouped_indices(self.lengths, self.batch_size, self.world_size, generator))


class LLaVATrainer(Trainer):
    """HF Trainer with per-module learning rates, modality-grouped batches, the projector's aux loss
    and metrics in the logs, crash-safe checkpoints (see `llava.train.checkpoints`) and LoRA
    checkpoints that keep the projector."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._aux_loss_sum, self._aux_loss_count = 0.0, 0

    @property
    def projector_metric_callbacks(self) -> list[ProjectorMetricsCallback]:
        return [cb for cb in self.callback_handler.callbacks if isinstance(cb, ProjectorMetricsCallback)]

    def _get_train_sampler(self, train_dataset=None) -> Sampler | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.group_by_modality_length and hasattr(dataset, "lengths"):
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return ModalityLengthGroupedSampler(dataset.lengths, batch, self.args.world_size, seed=self.args.seed)
        return super()._get_train_sampler(train_dataset)

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
        langs = inputs.pop("langs", None)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        aux = outputs.get("aux_loss")
        if aux is not None:
            self._aux_loss_sum += float(aux)
            self._aux_loss_count += 1
        metrics = outputs.get("projector_metrics")
        if metrics and model.training:
            owners = image_owner(inputs["input_ids"]).tolist()
            image_langs = [langs[i] if langs is not None else None for i in owners]
            for callback in self.projector_metric_callbacks:
                callback.on_projector_metrics(metrics, image_langs)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs:
            if self._aux_loss_count:
                logs["aux_loss"] = round(self._aux_loss_sum / self._aux_loss_count, 6)
                self._aux_loss_sum, self._aux_loss_count = 0.0, 0
            for callback in self.projector_metric_callbacks:
                logs.update(callback.pop_logs())
        super().log(logs, *args, **kwargs)

    # ---- checkpoints ------------------------------------------------------------------------
    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def _save_checkpoint(self, model, trial) -> None:
        """Save as HF does, then mark the folder complete once every rank is done, then rotate.

        A marker left from an earlier run in the same folder is removed first; old checkpoints
        are only deleted after the new one is marked, so a crash never leaves no complete one.
        """
        run_dir = self._get_output_dir(trial=trial)
        checkpoint_dir = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        stale_marker = os.path.join(checkpoint_dir, COMPLETE_MARKER)
        if self.args.should_save and os.path.exists(stale_marker):
            os.remove(stale_marker)
        limit = self.args.save_total_limit
        self.args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        if self.is_lora:
            save_non_lora_trainables(self.model, checkpoint_dir, self.args.should_save)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            mark_complete(checkpoint_dir, self.state.global_step)
            rotate_checkpoints(run_dir, limit, self.state.best_model_checkpoint, use_mtime=True)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """HF restores only the adapter of a LoRA model; the projector comes from the file beside it."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        target = self.model if model is None else model
        non_lora = os.path.join(resume_from_checkpoint, NON_LORA_TRAINABLES_FILE)
        if hasattr(target, "peft_config") and os.path.isfile(non_lora):
            load_non_lora_trainables(target.get_base_model(), non_lora)
