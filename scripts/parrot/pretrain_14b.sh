#!/usr/bin/env bash
# Stage 1 with Qwen1.5-14B-Chat (paper Table 5 otherwise unchanged): runs scripts/parrot/pretrain.sh
# with MODEL=Qwen/Qwen1.5-14B-Chat and RUN_NAME=parrot-qwen1.5-14b, on 2 nodes x 8 A100-80G.
#
#   PRETRAIN_DATA=... PRETRAIN_IMAGES=... bash scripts/parrot/pretrain_14b.sh [extra train.py flags]
#
# Environment: every variable of pretrain.sh (bash scripts/parrot/pretrain.sh --help).
# Preemption and SLURM requeue (exit status 75: a checkpoint was written; rerun to resume): scripts/lib.sh.
# help-footer: launcher
source "$(dirname "${BASH_SOURCE[0]}")/../help.sh"
parrot_help "${BASH_SOURCE[0]}" "$@"
export MODEL=${MODEL:-Qwen/Qwen1.5-14B-Chat} RUN_NAME=${RUN_NAME:-parrot-qwen1.5-14b}
exec bash "$(dirname "${BASH_SOURCE[0]}")/pretrain.sh" "$@"
