#!/usr/bin/env bash
# LLaVA-1.5 stage 2 as upstream's scripts/v1_5/finetune.sh: Vicuna-v1.5, the mix665k data, template v1,
# mlp2x_gelu, one node x 8 GPUs, ZeRO-3, per-GPU batch 16, global 128, lr 2e-5. It runs the same
# launcher as Parrot's stage 2 (scripts/parrot/finetune.sh, whose variables all apply); Parrot is
# one variable away: PROJECTOR=parrot_moe.
#   MODEL=lmsys/vicuna-13b-v1.5 DATA_ROOT=./playground/data bash scripts/v1_5/finetune.sh
#
# Environment: DATA_ROOT (./playground/data), MODEL (lmsys/vicuna-7b-v1.5), NNODES (1), PER_GPU_BATCH (16),
# CONV_VERSION (v1), PROJECTOR (mlp2x_gelu), SAVE_STEPS (50000), FINETUNE_DATA
# ($DATA_ROOT/llava_v1_5_mix665k.json), FINETUNE_IMAGES ($DATA_ROOT), PRETRAIN_MM_MLP_ADAPTER
# (./checkpoints/llava-v1.5-7b-pretrain/mm_projector.bin), OUTPUT_DIR (./checkpoints/llava-v1.5-7b), and
# every variable of scripts/parrot/finetune.sh.
# help-footer: launcher
source "$(dirname "${BASH_SOURCE[0]}")/../help.sh"
parrot_help "${BASH_SOURCE[0]}" "$@"
DATA_ROOT=${DATA_ROOT:-./playground/data}
export NNODES=${NNODES:-1} MODEL=${MODEL:-lmsys/vicuna-7b-v1.5} PER_GPU_BATCH=${PER_GPU_BATCH:-16} \
    CONV_VERSION=${CONV_VERSION:-v1} PROJECTOR=${PROJECTOR:-mlp2x_gelu} SAVE_STEPS=${SAVE_STEPS:-50000} \
    FINETUNE_DATA=${FINETUNE_DATA:-$DATA_ROOT/llava_v1_5_mix665k.json} FINETUNE_IMAGES=${FINETUNE_IMAGES:-$DATA_ROOT} \
    PRETRAIN_MM_MLP_ADAPTER=${PRETRAIN_MM_MLP_ADAPTER:-./checkpoints/llava-v1.5-7b-pretrain/mm_projector.bin} \
    OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/llava-v1.5-7b}
exec bash "$(dirname "${BASH_SOURCE[0]}")/../parrot/finetune.sh" "$@"
