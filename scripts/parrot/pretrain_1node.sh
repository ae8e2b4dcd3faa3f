#!/usr/bin/env bash
# Stage 1 on one node with 8 GPUs, no hostfile: gradient accumulation 2 keeps the global batch at 256.
# Preemption and SLURM requeue (exit status 75: a checkpoint was written; rerun to resume): scripts/lib.sh.
export NNODES=1 GPUS_PER_NODE=${GPUS_PER_NODE:-8}
exec bash "$(dirname "${BASH_SOURCE[0]}")/pretrain.sh" "$@"
