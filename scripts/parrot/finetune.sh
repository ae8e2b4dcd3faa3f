#!/usr/bin/env bash
# Parrot stage 2 (multilingual instruction tuning), paper Table 5: projector + multilingual MoE + LLM
# train, vision tower frozen; lr 2e-5, global batch 128 (per-GPU 8), ZeRO-3, 2 nodes x 8 A100-80G.
# Starts from the stage-1 projector (scripts/parrot/pretrain.sh).
#
#   FINETUNE_DATA=... FINETUNE_IMAGES=... bash scripts/parrot/finetune.sh [extra train.py flags]
#
# Environment: MODEL, VISION_TOWER, RUN_NAME as in pretrain.sh; OUTPUT_DIR (./checkpoints/$RUN_NAME),
# PRETRAIN_MM_MLP_ADAPTER (./checkpoints/$RUN_NAME-pretrain/mm_projector.bin), FINETUNE_DATA (a LLaVA
# JSON, or a mixture such as scripts/parrot/stage2_mixture.yaml: the paper's Table 1 composition),
# FINETUNE_IMAGES, CONV_VERSION (qwen_1_5), PROJECTOR (parrot_moe; mlp2x_gelu gives the LLaVA
# baseline), MOE_NUM_EXPERTS (6), LEARNING_RATE (2e-5), SAVE_STEPS (1000), DEEPSPEED_CONFIG
# (scripts/zero3.json; zero3_offload.json when GPU memory is short), plus the hardware, batch and
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
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/$RUN_NAME}
PRETRAIN_MM_MLP_ADAPTER=${PRETRAIN_MM_MLP_ADAPTER:-./checkpoints/$RUN_NAME-pretrain/mm_projector.bin}
FINETUNE_DATA=${FINETUNE_DATA:-./playground/data/parrot/finetune_multilingual.json}
FINETUNE_IMAGES=${FINETUNE_IMAGES:-./playground/data}
CONV_VERSION=${CONV_VERSION:-qwen_1_5}
PROJECTOR=${PROJECTOR:-parrot_moe}
MOE_NUM_EXPERTS=${MOE_NUM_EXPERTS:-6}
DEEPSPEED_CONFIG=${DEEPSPEED_CONFIG:-$PARROT_REPO/scripts/zero3.json}
LEARNING_RATE=${LEARNING_RATE:-2e-5}
SAVE_STEPS=${SAVE_STEPS:-1000}

PROJECTOR_FLAGS=(--mm_projector_type "$PROJECTOR")
[[ "$PROJECTOR" == parrot_moe ]] && PROJECTOR_FLAGS+=(--moe_num_experts "$MOE_NUM_EXPERTS")

parrot_hardware
parrot_batch 128 8
parrot_require_model MODEL
parrot_require_model VISION_TOWER
parrot_require_file PRETRAIN_MM_MLP_ADAPTER
parrot_require_file FINETUNE_DATA
parrot_require_dir FINETUNE_IMAGES
parrot_require_file DEEPSPEED_CONFIG

parrot_launch "${LAUNCHER[@]}" "$PARROT_TRAIN_PY" \
    --deepspeed "$DEEPSPEED_CONFIG" \
    --model_name_or_path "$MODEL" \
    --version "$CONV_VERSION" \
    --data_path "$FINETUNE_DATA" \
    --image_folder "$FINETUNE_IMAGES" \
    --vision_tower "$VISION_TOWER" \
    --pretrain_mm_mlp_adapter "$PRETRAIN_MM_MLP_ADAPTER" \
    "${PROJECTOR_FLAGS[@]}" \
    --group_by_modality_length True \
    "${PARROT_COMMON_FLAGS[@]}" \
    --output_dir "$OUTPUT_DIR" \
    --per_device_train_batch_size "$PER_GPU_BATCH" \
    --gradient_accumulation_steps "$GRAD_ACCUM" \
    --save_steps "$SAVE_STEPS" \
    --learning_rate "$LEARNING_RATE" \
    "$@"
