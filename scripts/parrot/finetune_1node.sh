#!/usr/bin/env bash
# Stage 2 on one node with 8 GPUs (A100-80G), no hostfile: runs scripts/parrot/finetune.sh with NNODES=1;
# gradient accumulation 2 keeps the global batch at 128.
#
#   FINETUNE_DATA=... FINETUNE_IMAGES=... bash scripts/parrot/finetune_1node.sh [extra train.py flags]
#
# Environment: every variable of finetune.sh (bash scripts/parrot/finetune.sh --help); GPUS_PER_NODE (8).
# Preemption and SLURM requeue (exit status 75: a checkpoint was written; rerun to resume): scripts/lib.sh.
# help-footer: launcher
source "$(dirname "${BASH_SOURCE[0]}")/../help.sh"
parrot_help "${BASH_SOURCE[0]}" "$@"
export NNODES=1 GPUS_PER_NODE=${GPUS_PER_NODE:-8}
exec bash "$(dirname "${BASH_SOURCE[0]}")/finetune.sh" "$@"
