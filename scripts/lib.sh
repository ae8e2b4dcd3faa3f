# Shared by the launch scripts (sourced, not run): hardware, batch arithmetic, preflight, launch.
#
# Hardware (paper Table 5: 2 nodes x 8 A100-80G):
#   NNODES (2), GPUS_PER_NODE (8), HOSTFILE (./hostfile, DeepSpeed format, see scripts/hostfile.example;
#   only read when NNODES > 1), MASTER_ADDR (optional), MASTER_PORT (29500).
# Batch: GLOBAL_BATCH_SIZE and PER_GPU_BATCH override a script's defaults; gradient accumulation is
#   derived so that PER_GPU_BATCH x GPUs x accumulation = GLOBAL_BATCH_SIZE on any GPU count.
# DRY_RUN=1 prints the fully resolved command instead of running it (the preflight still runs).
#
# Exit status of a training run (README, "Faults and recovery"): 0 done; 1 stopped on a fault it cannot
# train through (--max_bad_steps bad steps in a row, a full disk; the last complete checkpoint is
# intact); 2 a setup problem found before training; 75 preempted: a signal of --preemption_signals
# (default SIGTERM,SIGUSR1) reached a training process, every rank finished the same step, a complete
# checkpoint was written, and the same command resumes from it. One rank receiving the signal is
# enough. The deepspeed launcher forwards SIGTERM to the workers and kills them 30 s later, and
# SLURM's KillWait (30 s by default) bounds a preempted job likewise: a checkpoint that takes longer
# to write needs the signal ahead of time, SIGUSR1 below.
#
# SLURM requeue pattern, an sbatch script around these launchers (the batch shell runs on the job's
# first node, which holds ranks 0-7):
#
#   #SBATCH --requeue --open-mode=append
#   #SBATCH --signal=B:USR1@600        # SIGUSR1 to the batch shell 10 minutes before the time limit
#   bash scripts/parrot/finetune.sh &   # in the background, so that the trap can run
#   launcher=$!
#   trap 'pkill -USR1 -f "train_mem.py --local_rank"' USR1   # to this node's training processes
#   status=0; wait "$launcher" || status=$?
#   while kill -0 "$launcher" 2>/dev/null; do status=0; wait "$launcher" || status=$?; done
#   if [[ $status == 75 ]]; then scontrol requeue "$SLURM_JOB_ID"; fi   # resumes from the checkpoint
#   exit "$status"

PARROT_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PARROT_TRAIN_PY="$PARROT_REPO/llava/train/train_mem.py"

parrot_die() {
    echo "preflight: $*" >&2
    exit 1
}

# parrot_hardware: sets NUM_GPUS and LAUNCHER (the deepspeed launcher and its options).
parrot_hardware() {
    NNODES=${NNODES:-2}
    GPUS_PER_NODE=${GPUS_PER_NODE:-8}
    [[ "$NNODES" =~ ^[1-9][0-9]*$ ]] || parrot_die "NNODES=$NNODES must be a positive integer"
    [[ "$GPUS_PER_NODE" =~ ^[1-9][0-9]*$ ]] || parrot_die "GPUS_PER_NODE=$GPUS_PER_NODE must be a positive integer"
    NUM_GPUS=$((NNODES * GPUS_PER_NODE))
    LAUNCHER=(deepspeed --num_gpus "$GPUS_PER_NODE" --master_port "${MASTER_PORT:-29500}")
    if ((NNODES > 1)); then
        HOSTFILE=${HOSTFILE:-./hostfile}
        [[ -f "$HOSTFILE" ]] || parrot_die "HOSTFILE=$HOSTFILE: no such file; write one line per node " \
            "('node-0 slots=$GPUS_PER_NODE', see scripts/hostfile.example) or run on one node with NNODES=1"
        LAUNCHER+=(--hostfile "$HOSTFILE" --num_nodes "$NNODES")
        [[ -n "${MASTER_ADDR:-}" ]] && LAUNCHER+=(--master_addr "$MASTER_ADDR")
    fi
    return 0
}

# parrot_batch GLOBAL PER_GPU: sets PER_GPU_BATCH and GRAD_ACCUM for NUM_GPUS GPUs. When PER_GPU x GPUs
# already exceeds GLOBAL (e.g. 32 GPUs), the per-GPU batch shrinks so the global batch stays GLOBAL.
parrot_batch() {
    GLOBAL_BATCH_SIZE=${GLOBAL_BATCH_SIZE:-$1}
    PER_GPU_BATCH=${PER_GPU_BATCH:-$2}
    if ((PER_GPU_BATCH * NUM_GPUS > GLOBAL_BATCH_SIZE)); then
        ((GLOBAL_BATCH_SIZE % NUM_GPUS == 0)) || parrot_die "GLOBAL_BATCH_SIZE=$GLOBAL_BATCH_SIZE cannot be " \
            "split over $NUM_GPUS GPUs; choose a multiple of $NUM_GPUS"
        echo "note: $NUM_GPUS GPUs x per-GPU batch $PER_GPU_BATCH exceeds the global batch $GLOBAL_BATCH_SIZE;" \
            "using per-GPU batch $((GLOBAL_BATCH_SIZE / NUM_GPUS))" >&2
        PER_GPU_BATCH=$((GLOBAL_BATCH_SIZE / NUM_GPUS))
    fi
    local per_step=$((PER_GPU_BATCH * NUM_GPUS))
    ((GLOBAL_BATCH_SIZE % per_step == 0)) || parrot_die "GLOBAL_BATCH_SIZE=$GLOBAL_BATCH_SIZE is not a multiple" \
        "of PER_GPU_BATCH=$PER_GPU_BATCH x $NUM_GPUS GPUs = $per_step; change PER_GPU_BATCH or the GPU count"
    GRAD_ACCUM=$((GLOBAL_BATCH_SIZE / per_step))
}

# parrot_require_file NAME / parrot_require_dir NAME: the variable NAME must name an existing file/folder.
parrot_require_file() {
    [[ -f "${!1}" ]] || parrot_die "$1=${!1}: no such file; set $1 to the right path before launching"
}

parrot_require_dir() {
    [[ -d "${!1}" ]] || parrot_die "$1=${!1}: no such folder; set $1 to the right path before launching"
}

# parrot_require_model NAME: a local folder, or a Hugging Face hub id (org/name) when the hub is reachable.
parrot_require_model() {
    local value=${!1}
    [[ -d "$value" ]] && return 0
    if [[ "$value" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ && "${HF_HUB_OFFLINE:-0}" != 1 ]]; then
        return 0
    fi
    parrot_die "$1=$value: not a local model folder (nor a hub id usable with HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0})"
}

# Flags every stage shares (paper Table 5): 1 epoch, cosine, warmup 0.03, no weight decay, max length
# 2048, bf16 + tf32, gradient checkpointing, CLIP layer -2, images padded to square.
PARROT_COMMON_FLAGS=(
    --mm_vision_select_layer -2
    --mm_use_im_start_end False
    --mm_use_im_patch_token False
    --image_aspect_ratio pad
    --bf16 True
    --tf32 True
    --num_train_epochs 1
    --per_device_eval_batch_size 4
    --evaluation_strategy no
    --save_strategy steps
    --save_total_limit 1
    --weight_decay 0.
    --warmup_ratio 0.03
    --lr_scheduler_type cosine
    --logging_steps 1
    --model_max_length 2048
    --gradient_checkpointing True
    --dataloader_num_workers 4
    --lazy_preprocess True
    --report_to "${REPORT_TO:-wandb}"
)

# parrot_launch CMD...: run the command, or print it (shell-quoted, copy-pasteable) with DRY_RUN=1.
parrot_launch() {
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        printf '%q ' "$@"
        printf '\n'
        return 0
    fi
    exec "$@"
}
