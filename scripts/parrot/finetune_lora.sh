#!/usr/bin/env bash
# Stage 2 with LoRA on the LLM (r 128, alpha 256, lr 2e-4) while the projector and the MoE train in
# full (lr 2e-5, --mm_projector_lr). Writes an adapter folder; merge it into a standalone checkpoint:
#   python scripts/merge_lora_weights.py --model-path ./checkpoints/$RUN_NAME-lora \
#       --model-base Qwen/Qwen1.5-7B-Chat --save-model-path ./checkpoints/$RUN_NAME-lora-merged
# QLoRA: append --bits 4 (needs CUDA and bitsandbytes). Runs scripts/parrot/finetune.sh (2 nodes x 8
# A100-80G by default) with these flags; every variable of finetune.sh applies
# (bash scripts/parrot/finetune.sh --help); OUTPUT_DIR (./checkpoints/$RUN_NAME-lora), LEARNING_RATE (2e-4).
# Preemption and SLURM requeue (exit status 75: a checkpoint was written; rerun to resume): scripts/lib.sh.
# help-footer: launcher
source "$(dirname "${BASH_SOURCE[0]}")/../help.sh"
parrot_help "${BASH_SOURCE[0]}" "$@"
export OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/${RUN_NAME:-parrot-qwen1.5-7b}-lora} LEARNING_RATE=${LEARNING_RATE:-2e-4}
exec bash "$(dirname "${BASH_SOURCE[0]}")/finetune.sh" --lora_enable True --lora_r 128 --lora_alpha 256 --mm_projector_lr 2e-5 "$@"
