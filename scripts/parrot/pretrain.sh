#!/usr/bin/env bash
# Parrot stage 1 (modality alignment), paper Table 5: only the projector trains; lr 1e-3,
# global batch 256 (per-GPU 16), ZeRO-2, 2 nodes x 8 A100-80G.
#
#   PRETRAIN_DATA=... PRETRAIN_IMAGES=... bash scripts/parrot/pretrain.sh [extra train.py flags]
#
# Environment: MODEL (Qwen/Qwen1.5-7B-Chat), VISION_TOWER (openai/clip-vit-large-patch14-336),
# RUN_NAME (parrot-qwen1.5-7b), OUTPUT_DIR (./checkpoints/$RUN_NAME-pretrain),
# PRETRAIN_DATA (LLaVA JSON), PRETRAIN_IMAGES (its image folder), plus the hardware, batch and
# DRY_RUN variables of scripts/lib.sh.
# Preemption and SLURM requeue (exit status 75: a checkpoint was written; rerun to resume): scripts/lib.sh.
# help-footer: launcher
source "$(dirname "${BASH_SOURCE[0]}")/../help.sh"
parrot_help "${BASH_SOURCE[0]}" "$@"
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

MODEL=${MODEL:-Qwen/Qwen1.5-7B-Chat}
VISION_TOWER=${VISION_TOWER:-openai/clip-vit-large-patch14-336}
RUN_NAME=${RUN_NAME:-parrot-qwen1.5-7b}
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/$RUN_NAME-pretrain}
PRETRAIN_DATA=${PRETRAIN_DATA:-./playground/data/parrot/pretrain.json}
PRETRAIN_IMAGES=${PRETRAIN_IMAGES:-./playground/data/parrot/pretrain_images}

parrot_hardware
parrot_batch 256 16
parrot_require_model MODEL
parrot_require_model VISION_TOWER
parrot_require_file PRETRAIN_DATA
parrot_require_dir PRETRAIN_IMAGES

parrot_launch "${LAUNCHER[@]}" "$PARROT_TRAIN_PY" \
    --deepspeed "$PARROT_REPO/scripts/zero2.json" \
    --model_name_or_path "$MODEL" \
    --version plain \
    --data_path "$PRETRAIN_DATA" \
    --image_folder "$PRETRAIN_IMAGES" \
    --vision_tower "$VISION_TOWER" \
    --mm_projector_type mlp2x_gelu \
    --tune_mm_mlp_adapter True \
    "${PARROT_COMMON_FLAGS[@]}" \
    --output_dir "$OUTPUT_DIR" \
    --per_device_train_batch_size "$PER_GPU_BATCH" \
    --gradient_accumulation_steps "$GRAD_ACCUM" \
    --save_steps 24000 \
    --learning_rate 1e-3 \
    "$@"
