"""Evaluation throughput: samples/s with batch 8 against batch 1, side by side, on the tiny LLaVA.

    python bench/eval_throughput.py                 # 48 questions, 8 new tokens each, 1 thread
    python bench/eval_throughput.py --samples 64 --max-new-tokens 16 --device cuda

What is timed is the evaluation runner's own path (`llava.eval.run_benchmark.answer_benchmark`):
image decoding, prompt building, batched left-padded greedy generation and the appended chunk
file, over a synthetic MMBench-style TSV (one image per row, questions in the six languages).
The untrained tiny model never emits its stop string, so every row generates exactly
`--max-new-tokens` tokens at either batch size. The two batch sizes take turns for `--repeats`
rounds after one warm-up batch each; the median is reported. On the CPU `--threads` defaults to 1:
with more threads than free cores, OpenMP waits make timings swing by several x from run to run. The last line reads
`batch 8 vs batch 1: N.NNx`.

The model is the quickstart's tiny shape by default (`--llm llama --hidden-size 128`: SmolLM2's
49k vocabulary, width 128). `--llm qwen2 --hidden-size 64` is the test suite's tiny model, whose
151,936 x 64 output layer dominates every step; on this CPU a matmul of that shape costs about 3.5x
more for 8 rows than for 1, which caps its speedup near 3x whatever the runner does.

Nothing is downloaded: the tiny assets are built from pip-shipped tokenizer files (`llava.tiny`)
into `--work-dir` and reused on later runs.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would bury the figures; set before tqdm loads

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from llava.eval.benchmark import Benchmark, read_benchmark  # noqa: E402
from llava.eval.generation import LoadedModel, load_model  # noqa: E402
from llava.eval.run_benchmark import answer_benchmark  # noqa: E402

QUESTIONS = {
    "en": ("What colour is the square?", ["red", "green", "blue", "yellow"]),
    "zh": ("正方形是什么颜色？", ["红色", "绿色", "蓝色", "黄色"]),
    "pt": ("Qual é a cor do quadrado?", ["vermelho", "verde", "azul", "amarelo"]),
    "ar": ("ما لون المربع؟", ["أحمر", "أخضر", "أزرق", "أصفر"]),
    "tr": ("Karenin rengi nedir?", ["kırmızı", "yeşil", "mavi", "sarı"]),
    "ru": ("Какого цвета квадрат?", ["красный", "зелёный", "синий", "жёлтый"]),
}
RGB = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 20)]


def build_checkpoint(work_dir: Path, llm: str = "llama", hidden_size: int = 128) -> Path:
    """An untrained tiny `llm` + CLIP LLaVA checkpoint under `work_dir` (built once per shape)."""
    from llava.tiny import build_tiny_assets, save_tiny_llava

    out = work_dir / f"tiny_llava_{llm}_{hidden_size}"
    if (out / "config.json").exists():
        return out
    assets = build_tiny_assets(work_dir / f"assets_{hidden_size}", seed=0, hidden_size=hidden_size)
    return save_tiny_llava(assets, out, llm=llm)


def write_benchmark(path: Path, samples: int, seed: int = 0) -> Benchmark:
    """A VLMEvalKit-layout TSV with `samples` rows, each with its own 64x64 PNG."""
    rng = random.Random(seed)
    header = ["index", "question", "A", "B", "C", "D", "answer", "category", "split", "image"]
    rows = []
    for index in range(samples):
        language = list(QUESTIONS)[index % len(QUESTIONS)]
        question, options = QUESTIONS[language]
        colour = rng.randrange(4)
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), RGB[colour]).save(buffer, format="PNG")
        image = base64.b64encode(buffer.getvalue()).decode()
        rows.append([str(index), question, *options, "ABCD"[colour], "color", "dev", image])
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return read_benchmark(path, language="en")


def time_batch_size(model: LoadedModel, benchmark: Benchmark, batch_size: int, out: Path) -> float:
    """Seconds to answer every row of `benchmark` at `batch_size` through the runner."""
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    answer_benchmark(benchmark, model.generate, out, benchmark.items, batch_size=batch_size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--llm", choices=["llama", "qwen2"], default="llama", help="tiny LLM backbone")
    parser.add_argument("--hidden-size", type=int, default=128, help="tiny LLM width")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads; 0 keeps torch's default")
    parser.add_argument(
        "--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "parrot_eval_throughput"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = build_checkpoint(args.work_dir, args.llm, args.hidden_size)
    benchmark = write_benchmark(args.work_dir / "bench_en.tsv", args.samples)
    model = load_model(
        str(checkpoint), device=args.device, dtype="float32", max_new_tokens=args.max_new_tokens
    )
    warmup = read_benchmark(args.work_dir / "bench_en.tsv", language="en")
    warmup.items = warmup.items[:8]
    timings: dict[int, list[float]] = {1: [], 8: []}
    for batch_size in timings:
        time_batch_size(model, warmup, batch_size, args.work_dir / f"warmup_b{batch_size}.tsv")
    for _ in range(args.repeats):
        for batch_size in timings:
            out = args.work_dir / f"answers_b{batch_size}.tsv"
            timings[batch_size].append(time_batch_size(model, benchmark, batch_size, out))
    print(
        f"tiny {args.llm} (width {args.hidden_size}) + CLIP, device {args.device}, torch threads {torch.get_num_threads()}, {args.samples} samples, "
        f"{args.max_new_tokens} new tokens each, median of {args.repeats}"
    )
    rates = {}
    for batch_size, seconds in timings.items():
        rates[batch_size] = args.samples / statistics.median(seconds)
        runs = ", ".join(f"{s:.2f}s" for s in seconds)
        print(f"batch {batch_size}: {rates[batch_size]:8.2f} samples/s  ({runs})")
    print(f"batch 8 vs batch 1: {rates[8] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
