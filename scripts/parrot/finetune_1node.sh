#!/usr/bin/env bash
# Stage 2 on one node with 8 GPUs, no hostfile: gradient accumulation 2 keeps the global batch at 128.
export NNODES=1 GPUS_PER_NODE=${GPUS_PER_NODE:-8}
exec bash "$(dirname "${BASH_SOURCE[0]}")/finetune.sh" "$@"
