#!/usr/bin/env bash
# LLaVA-1.5 stage 1 as upstream's scripts/v1_5/pretrain.sh: Vicuna-v1.5 + CLIP ViT-L/14-336 on
# LLaVA-Pretrain 558K, one node x 8 GPUs, ZeRO-2, per-GPU batch 32, global 256, lr 1e-3. It runs the
# same launcher as Parrot's stage 1 (scripts/parrot/pretrain.sh, whose variables all apply).
#   MODEL=lmsys/vicuna-13b-v1.5 DATA_ROOT=./playground/data bash scripts/v1_5/pretrain.sh
#
# Environment: DATA_ROOT (./playground/data), MODEL (lmsys/vicuna-7b-v1.5), NNODES (1), PER_GPU_BATCH (32),
# PRETRAIN_DATA ($DATA_ROOT/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json), PRETRAIN_IMAGES
# ($DATA_ROOT/LLaVA-Pretrain/images), OUTPUT_DIR (./checkpoints/llava-v1.5-7b-pretrain), and every
# variable of scripts/parrot/pretrain.sh.
# help-footer: launcher
source "$(dirname "${BASH_SOURCE[0]}")/../help.sh"
parrot_help "${BASH_SOURCE[0]}" "$@"
DATA_ROOT=${DATA_ROOT:-./playground/data}
export NNODES=${NNODES:-1} MODEL=${MODEL:-lmsys/vicuna-7b-v1.5} PER_GPU_BATCH=${PER_GPU_BATCH:-32} \
    PRETRAIN_DATA=${PRETRAIN_DATA:-$DATA_ROOT/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json} \
    PRETRAIN_IMAGES=${PRETRAIN_IMAGES:-$DATA_ROOT/LLaVA-Pretrain/images} \
    OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/llava-v1.5-7b-pretrain}
exec bash "$(dirname "${BASH_SOURCE[0]}")/../parrot/pretrain.sh" "$@"
