"""Acceptance: upstream LLaVA-1.5's scripts/v1_5/pretrain.sh and finetune.sh flag sets, unchanged
except for model/data paths (tiny ones), launched with python and torchrun instead of deepspeed."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pretrain_flags(assets, data, out):
    # scripts/v1_5/pretrain.sh of LLaVA-1.5, flag for flag
    return [
        "--deepspeed", "./scripts/zero2.json",
        "--model_name_or_path", str(assets["qwen2"]),
        "--version", "plain",
        "--data_path", str(data["captions"]),
        "--image_folder", str(data["images"]),
        "--vision_tower", str(assets["clip"]),
        "--mm_projector_type", "mlp2x_gelu",
        "--tune_mm_mlp_adapter", "True",
        "--mm_vision_select_layer", "-2",
        "--mm_use_im_start_end", "False",
        "--mm_use_im_patch_token", "False",
        "--bf16", "True",
        "--output_dir", str(out),
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "32",
        "--per_device_eval_batch_size", "4",
        "--gradient_accumulation_steps", "1",
        "--evaluation_strategy", "no",
        "--save_strategy", "steps",
        "--save_steps", "24000",
        "--save_total_limit", "1",
        "--learning_rate", "1e-3",
        "--weight_decay", "0.",
        "--warmup_ratio", "0.03",
        "--lr_scheduler_type", "cosine",
        "--logging_steps", "1",
        "--tf32", "True",
        "--model_max_length", "2048",
        "--gradient_checkpointing", "True",
        "--dataloader_num_workers", "4",
        "--lazy_preprocess", "True",
        "--report_to", "wandb",
    ]


def finetune_flags(assets, data, adapter, out):
    # scripts/v1_5/finetune.sh of LLaVA-1.5, flag for flag
    return [
        "--deepspeed", "./scripts/zero3.json",
        "--model_name_or_path", str(assets["qwen2"]),
        "--version", "v1",
        "--data_path", str(data["instructions"]),
        "--image_folder", str(data["images"]),
        "--vision_tower", str(assets["clip"]),
        "--pretrain_mm_mlp_adapter", str(adapter),
        "--mm_projector_type", "mlp2x_gelu",
        "--mm_vision_select_layer", "-2",
        "--mm_use_im_start_end", "False",
        "--mm_use_im_patch_token", "False",
        "--image_aspect_ratio", "pad",
        "--group_by_modality_length", "True",
        "--bf16", "True",
        "--output_dir", str(out),
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16",
        "--per_device_eval_batch_size", "4",
        "--gradient_accumulation_steps", "1",
        "--evaluation_strategy", "no",
        "--save_strategy", "steps",
        "--save_steps", "50000",
        "--save_total_limit", "1",
        "--learning_rate", "2e-5",
        "--weight_decay", "0.",
        "--warmup_ratio", "0.03",
        "--lr_scheduler_type", "cosine",
        "--logging_steps", "1",
        "--tf32", "True",
        "--model_max_length", "2048",
        "--gradient_checkpointing", "True",
        "--dataloader_num_workers", "4",
        "--lazy_preprocess", "True",
        "--report_to", "wandb",
    ]


def run(command, tmp_path):
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1"}
    import os

    result = subprocess.run(command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def test_upstream_pretrain_then_finetune_flag_sets_train_and_save(tiny_assets, tiny_data, tmp_path):
    stage1, stage2 = tmp_path / "pretrain", tmp_path / "finetune"
    run([sys.executable, "llava/train/train.py", *pretrain_flags(tiny_assets, tiny_data, stage1)], tmp_path)
    assert (stage1 / "mm_projector.bin").exists()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    run([*torchrun, "llava/train/train_mem.py",
         *finetune_flags(tiny_assets, tiny_data, stage1 / "mm_projector.bin", stage2)], tmp_path)
    assert (stage2 / "model.safetensors").exists() and (stage2 / "config.json").exists()
