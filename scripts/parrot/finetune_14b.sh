#!/usr/bin/env bash
# Stage 2 with Qwen1.5-14B-Chat (paper Table 5 otherwise unchanged); see finetune.sh.
# Preemption and SLURM requeue (exit status 75: a checkpoint was written; rerun to resume): scripts/lib.sh.
export MODEL=${MODEL:-Qwen/Qwen1.5-14B-Chat} RUN_NAME=${RUN_NAME:-parrot-qwen1.5-14b}
exec bash "$(dirname "${BASH_SOURCE[0]}")/finetune.sh" "$@"
