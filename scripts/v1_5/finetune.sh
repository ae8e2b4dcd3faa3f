#!/usr/bin/env bash
# LLaVA-1.5 stage 2, as upstream's scripts/v1_5/finetune.sh (one node, 8 GPUs, ZeRO-3, global batch
# 128, lr 2e-5). Parrot is one flag away: PROJECTOR=parrot_moe (or use scripts/parrot/finetune.sh).
#   MODEL=lmsys/vicuna-13b-v1.5 DATA_ROOT=./playground/data bash scripts/v1_5/finetune.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NNODES=${NNODES:-1}
MODEL=${MODEL:-lmsys/vicuna-7b-v1.5}
VISION_TOWER=${VISION_TOWER:-openai/clip-vit-large-patch14-336}
DATA_ROOT=${DATA_ROOT:-./playground/data}
FINETUNE_DATA=${FINETUNE_DATA:-$DATA_ROOT/llava_v1_5_mix665k.json}
FINETUNE_IMAGES=${FINETUNE_IMAGES:-$DATA_ROOT}
PRETRAIN_MM_MLP_ADAPTER=${PRETRAIN_MM_MLP_ADAPTER:-./checkpoints/llava-v1.5-7b-pretrain/mm_projector.bin}
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/llava-v1.5-7b}
PROJECTOR=${PROJECTOR:-mlp2x_gelu}

parrot_hardware
parrot_batch 128 16
parrot_require_model MODEL
parrot_require_model VISION_TOWER
parrot_require_file PRETRAIN_MM_MLP_ADAPTER
parrot_require_file FINETUNE_DATA
parrot_require_dir FINETUNE_IMAGES

parrot_launch "${LAUNCHER[@]}" "$PARROT_TRAIN_PY" \
    --deepspeed "$PARROT_REPO/scripts/zero3.json" \
    --model_name_or_path "$MODEL" \
    --version v1 \
    --data_path "$FINETUNE_DATA" \
    --image_folder "$FINETUNE_IMAGES" \
    --vision_tower "$VISION_TOWER" \
    --pretrain_mm_mlp_adapter "$PRETRAIN_MM_MLP_ADAPTER" \
    --mm_projector_type "$PROJECTOR" \
    --group_by_modality_length True \
    "${PARROT_COMMON_FLAGS[@]}" \
    --output_dir "$OUTPUT_DIR" \
    --per_device_train_batch_size "$PER_GPU_BATCH" \
    --gradient_accumulation_steps "$GRAD_ACCUM" \
    --save_steps 50000 \
    --learning_rate 2e-5 \
    "$@"
