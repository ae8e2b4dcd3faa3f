# Sourced first by every launcher (scripts/parrot/*.sh, scripts/v1_5/*.sh, run_tests.sh, quickstart.sh):
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../help.sh"
#   parrot_help "${BASH_SOURCE[0]}" "$@"
#
# parrot_help SCRIPT ARGS...: when ARGS hold -h or --help, print SCRIPT's header comment (what it runs,
# the variables and arguments it reads, the hardware it is tuned for), then the footer its header asks
# for with a `# help-footer: NAME` line, and exit 0 before anything is checked, installed or started.
# parrot_wants_help ARGS...: status 0 when ARGS hold -h or --help (for scripts whose own program
# answers --help after a set-up step that help should skip).

parrot_wants_help() {
    local arg
    for arg in "$@"; do
        [[ "$arg" == "-h" || "$arg" == "--help" ]] && return 0
    done
    return 1
}

parrot_help() {
    local script=$1
    shift
    parrot_wants_help "$@" || return 0
    local footer
    footer=$(sed -n 's/^# help-footer: *//p' "$script")
    # The header: the comment lines after the shebang, up to the first line that is not a comment.
    sed -n '2,${/^#/!q;/^# help-footer:/d;s/^# \{0,1\}//;p}' "$script"
    case "$footer" in
        launcher)
            cat <<'USAGE'

Hardware and batch (scripts/lib.sh, shared by every launcher; defaults unless set above): NNODES (2),
GPUS_PER_NODE (8),
HOSTFILE (./hostfile, DeepSpeed format, read when NNODES > 1), MASTER_ADDR, MASTER_PORT (29500),
GLOBAL_BATCH_SIZE and PER_GPU_BATCH (gradient accumulation is derived for the GPU count),
REPORT_TO (wandb). DRY_RUN=1 prints the resolved deepspeed command instead of running it.
Extra arguments go to llava/train/train_mem.py; `python -m llava.train.train --help` lists them.
Exit status: 0 done, 1 a fault it cannot train through, 2 a setup problem, 75 preempted (rerun).
USAGE
            ;;
        "") ;;
        *) echo "help.sh: unknown help-footer '$footer' in $script" >&2; exit 2 ;;
    esac
    exit 0
}
