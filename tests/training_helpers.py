"""Helpers for tests that train through `llava.train.train.train` (imported by test files; not a test)."""

import torch
from transformers import TrainerCallback

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
