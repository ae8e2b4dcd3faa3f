"""Helpers for tests that train through `llava.train.train.train` (imported by test files and by
`distributed_utils.py`; not a test)."""

import os
import signal
from contextlib import contextmanager

import torch
from transformers import TrainerCallback

from llava.data.dataset import LazySupervisedDataset
from llava.train.train import train


def common_flags(tiny_assets, tiny_data, out, *, stage: int, extra=()):
    flags = [
        "--model_name_or_path", str(tiny_assets["qwen2"]),
        "--vision_tower", str(tiny_assets["clip"]),
        "--image_folder", str(tiny_data["images"]),
        "--mm_projector_type", "mlp2x_gelu",
        "--mm_vision_select_layer", "-2",
        "--mm_use_im_start_end", "False",
        "--mm_use_im_patch_token", "False",
        "--output_dir", str(out),
        "--per_device_train_batch_size", "4",
        "--max_steps", "2",
        "--save_strategy", "no",
        "--logging_steps", "1",
        "--report_to", "none",
        "--dataloader_num_workers", "0",
        "--seed", "0",
    ]
    if stage == 1:
        flags += ["--version", "plain", "--data_path", str(tiny_data["captions"]),
                  "--tune_mm_mlp_adapter", "True", "--learning_rate", "1e-2"]
    else:
        flags += ["--version", "qwen_2", "--data_path", str(tiny_data["instructions"]), "--learning_rate", "1e-3"]
    return flags + list(extra)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before, model):
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


def train_capturing_initial_weights(argv):
    """Run training; return (trainer, parameters as they were when the first step began)."""
    captured = {}

    class SnapshotAtStart(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            captured["before"] = snapshot(model)

    trainer = train(argv, callbacks=[SnapshotAtStart()])
    return trainer, captured["before"]


@contextmanager
def nan_images_for(ids: set[str]):
    """While active, the images of these data items are all NaN: bad samples whose loss is NaN."""
    getitem = LazySupervisedDataset.__getitem__

    def poisoned(self, index):
        sample = getitem(self, index)
        if sample["id"] in ids and sample.get("images") is not None:
            sample["images"] = torch.full_like(sample["images"], float("nan"))
        return sample

    LazySupervisedDataset.__getitem__ = poisoned
    try:
        yield
    finally:
        LazySupervisedDataset.__getitem__ = getitem


class SignalDuringStep(TrainerCallback):
    """Sends `signal_name` to this process when optimizer step `step` begins (it arrives mid-step)."""

    def __init__(self, signal_name: str, step: int):
        self.signal, self.step = signal.Signals[signal_name], step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step - 1:
            os.kill(os.getpid(), self.signal)
