"""scripts/eval/paper_eval.sh runs the paper's whole set (multilingual and general) on the tiny
checkpoint and writes one table and the general radar."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from general_bench_files import LAYOUTS, write_layout

from llava.eval.benchmark import BENCHMARK_LANGUAGE_SUFFIXES

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).parent / "fixtures" / "eval" / "bench"


def test_paper_script_runs_the_whole_set_and_writes_one_table(tiny_llava_checkpoint, tmp_path):
    data = tmp_path / "data"
    for name in LAYOUTS:
        write_layout(data / "general", name)
    for family in ("MMMB", "MMBench_dev"):
        for suffix in BENCHMARK_LANGUAGE_SUFFIXES:
            if family == "MMBench_dev" and suffix == "cn":
                continue  # the general set's MMBench-CN file is this language's file
            source = BENCH / f"{family}_{suffix}.tsv"
            if not source.is_file():
                source = BENCH / ("MMMB_en.tsv" if family == "MMMB" else "MMBench_dev_ru.tsv")
            (data / family.lower()).mkdir(parents=True, exist_ok=True)
            shutil.copy(source, data / family.lower() / f"{family}_{suffix}.tsv")
    checkpoint = shutil.copytree(tiny_llava_checkpoint, tmp_path / "ckpt")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/eval/paper_eval.sh"), str(checkpoint), str(data), str(out),
         "--batch-size", "4", "--max-new-tokens", "2", "--device", "cpu", "--prompt-style", "parrot"],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (out / "paper_summary.md").read_text()
    for label in ("MMMB", "MMBench", "MMBench-CN", "MME", "MMStar", "ScienceQA-IMG", "SEED-Bench-IMG", "RealWorldQA"):
        assert f"| {label} | " in table, label
    assert "not evaluated" not in table and "| MME | " in table and "perception + cognition | mme | parrot |" in table
    assert (out / "radar_general.png").stat().st_size > 0 and (out / "paper_summary.csv").is_file()
    assert "# The paper's evaluation: ckpt" in result.stdout


def test_paper_script_without_arguments_says_how_to_call_it():
    result = subprocess.run(["bash", str(ROOT / "scripts/eval/paper_eval.sh")], capture_output=True, text=True)
    assert result.returncode == 2 and "usage: bash scripts/eval/paper_eval.sh CKPT DATA_ROOT" in result.stderr
    help_text = subprocess.run(["bash", str(ROOT / "scripts/eval/paper_eval.sh"), "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "DATA_ROOT holds the TSV files" in help_text.stdout
