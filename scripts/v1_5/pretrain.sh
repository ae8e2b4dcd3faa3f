#!/usr/bin/env bash
# LLaVA-1.5 stage 1, as upstream's scripts/v1_5/pretrain.sh (one node, 8 GPUs, ZeRO-2, global batch
# 256, lr 1e-3). To pretrain for Parrot use scripts/parrot/pretrain.sh (Qwen1.5, 2 nodes).
#   MODEL=lmsys/vicuna-13b-v1.5 DATA_ROOT=./playground/data bash scripts/v1_5/pretrain.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NNODES=${NNODES:-1}
MODEL=${MODEL:-lmsys/vicuna-7b-v1.5}
VISION_TOWER=${VISION_TOWER:-openai/clip-vit-large-patch14-336}
DATA_ROOT=${DATA_ROOT:-./playground/data}
PRETRAIN_DATA=${PRETRAIN_DATA:-$DATA_ROOT/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json}
PRETRAIN_IMAGES=${PRETRAIN_IMAGES:-$DATA_ROOT/LLaVA-Pretrain/images}
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/llava-v1.5-7b-pretrain}

parrot_hardware
parrot_batch 256 32
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
