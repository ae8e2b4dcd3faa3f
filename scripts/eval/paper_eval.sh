#!/usr/bin/env bash
# The paper's whole evaluation of one checkpoint: the multilingual benchmarks (MMMB and the
# six-language MMBench) and the general benchmarks of its radar chart (MMBench-CN, MME, MMStar,
# ScienceQA-IMG, SEED-Bench-IMG, RealWorldQA), answered in batches and scored judge-free, then one
# summary table (OUT/paper_summary.md and .csv) and the general radar (OUT/radar_general.png).
#
#   bash scripts/eval/paper_eval.sh CKPT DATA_ROOT [OUT] [extra run_benchmark flags]
#
# DATA_ROOT holds the TSV files under any folders (docs/evaluation_data.md says where each comes
# from): MMMB_{en,cn,pt,ar,tr,ru}.tsv, MMBench_dev_{...}.tsv, MME.tsv, MMStar.tsv,
# ScienceQA_TEST.tsv, SEEDBench_IMG.tsv, RealWorldQA.tsv (names match case-insensitively).
# OUT defaults to outputs/eval/<checkpoint folder name>. Extra flags go to
# python -m llava.eval.run_benchmark, e.g. --prompt-style vlmevalkit, --batch-size 16,
# --overwrite_output_dir. A rerun resumes what a killed run left. Under torchrun, each rank answers
# its shard; the table is written once every file is merged.
# Exit status: 0 done, 2 a missing file or bad argument (the message names it).
source "$(dirname "${BASH_SOURCE[0]}")/../help.sh"
parrot_help "${BASH_SOURCE[0]}" "$@"
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: bash scripts/eval/paper_eval.sh CKPT DATA_ROOT [OUT] [extra run_benchmark flags] (--help)" >&2
    exit 2
fi
CKPT=$1
DATA_ROOT=$2
shift 2
OUT=outputs/eval/$(basename "${CKPT%/}")
if [[ $# -gt 0 && $1 != -* ]]; then
    OUT=$1
    shift
fi
PYTHON=${PYTHON:-python}

"$PYTHON" -m llava.eval.run_benchmark --model-path "$CKPT" --benchmark paper --data-root "$DATA_ROOT" \
    --output-dir "$OUT" "$@"
for name in MMMB_en MMMB_cn MMMB_pt MMMB_ar MMMB_tr MMMB_ru MMBench_dev_en MMBench_dev_cn MMBench_dev_pt \
    MMBench_dev_ar MMBench_dev_tr MMBench_dev_ru MME MMStar ScienceQA_TEST SEEDBench_IMG RealWorldQA; do
    if ! ls "$OUT" | grep -qix "$name.tsv"; then
        echo "$name is not merged yet (other shards still answering): run python -m llava.eval.paper_table $OUT once they finish"
        exit 0
    fi
done
"$PYTHON" -m llava.eval.paper_table "$OUT"
