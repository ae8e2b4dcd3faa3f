"""Answer and score MMMB, six-language MMBench, the general benchmarks (MME, MMStar, ...) with a LLaVA checkpoint.

    python -m llava.eval.run_benchmark --model-path CKPT --benchmark MMMB --data-root DIR
    python -m llava.eval.run_benchmark --model-path CKPT --files a.tsv b.tsv --batch-size 16
    torchrun --nproc_per_node 8 -m llava.eval.run_benchmark --model-path CKPT --benchmark MMBench ...

Each process answers its shard (`--num-chunks/--chunk-idx`, or torchrun's WORLD_SIZE/RANK) in
batches of `--batch-size`, appending to `OUT/chunks/<dataset>.chunk<K>of<N>.tsv` after every
batch. A rerun skips the indices already answered in any chunk file of that dataset, so a killed
job resumes where it stopped. The process that finds every row of every file answered merges the
chunks into `OUT/<dataset>.tsv` (VLMEvalKit layout plus `prediction` and `extracted`), scores them
(`<dataset>_result.tsv`, `<dataset>_acc.csv`) and merges them into each benchmark's
`summary_<benchmark>.md/.csv/.json` and `radar_<benchmark>.png` (`llava.eval.summary`). A folder
where a dataset is already merged holds a finished run: it is refused unless
`--overwrite_output_dir` (then answered afresh, see `llava.eval.output_guard`). The scores also go
onto the checkpoint's model card (`CKPT/README.md`, see `llava.eval.card`).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from llava.eval.benchmark import (
    PAIR_KEY_COLUMN,
    Benchmark,
    BenchmarkFileError,
    BenchmarkItem,
    ImageLoadError,
    expand_benchmark,
    read_benchmark,
)
from llava.eval.card import record_results_on_card
from llava.eval.extraction import extract_answer
from llava.eval.generation import GenerateFn, LoadedModel, batched, get_chunk, model_loader, resolve_shard
from llava.eval.mme import MMEResult, extract_yes_no
from llava.eval.output_guard import guard_eval_output_dir
from llava.eval.prompts import DEFAULT_PROMPT_STYLE, PROMPT_STYLES, build_prompt
from llava.eval.reports import atomic_write_rows, output_columns, tsv_safe
from llava.eval.score import score_file, write_summary
from llava.eval.scoring import RULES, Accuracy
from llava.eval.summary import SummaryMismatchError
from llava.output_dir import FinishedRunError

logger = logging.getLogger(__name__)

CHUNK_COLUMNS = ("prediction", "issue")


def chunk_path(output_dir: Path, name: str, num_chunks: int, chunk_idx: int) -> Path:
    return output_dir / "chunks" / f"{name}.chunk{chunk_idx}of{num_chunks}.tsv"


def read_chunk_rows(path: Path) -> dict[str, dict[str, str]]:
    """Rows already answered in a chunk file, by index; a torn last line (killed mid-write) is dropped."""
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        path.write_text(text, encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    if not rows:
        return {}
    header = rows[0]
    if "index" not in header:
        return {}
    return {row[header.index("index")]: dict(zip(header, row)) for row in rows[1:] if len(row) == len(header)}


def answered_rows(output_dir: Path, name: str) -> dict[str, dict[str, str]]:
    """Answered rows of dataset `name` across all its chunk files (any sharding)."""
    answered: dict[str, dict[str, str]] = {}
    for path in sorted((output_dir / "chunks").glob(f"{name}.chunk*of*.tsv")):
        for key, row in read_chunk_rows(path).items():
            answered.setdefault(key, row)
    return answered


def _chunk_values(benchmark: Benchmark, item: BenchmarkItem, prediction: str, issue: str) -> list[str]:
    values = dict(item.fields)
    values[PAIR_KEY_COLUMN] = "" if item.image_key is None else str(item.image_key)
    values.update(prediction=prediction, issue=issue)
    return [values.get(column, "") for column in output_columns(benchmark, CHUNK_COLUMNS)]


def row_prompt(benchmark: Benchmark, item: BenchmarkItem, prompt_style: str) -> str:
    """The user message for one row of `benchmark` in `prompt_style` (`llava.eval.prompts`)."""
    return build_prompt(item, benchmark.language, style=prompt_style, kind=benchmark.kind, dataset=benchmark.name)


def answer_benchmark(
    benchmark: Benchmark,
    generate: GenerateFn,
    path: Path,
    items: list[BenchmarkItem],
    *,
    batch_size: int,
    prompt_style: str = DEFAULT_PROMPT_STYLE,
) -> int:
    """Answer `items` in batches, appending each batch to the chunk file `path`; return rows written.

    Rows already carrying a problem, or whose image does not decode, are written with an empty
    prediction and the problem in `issue` (scored wrong later) and never reach the model.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists() or path.stat().st_size == 0
    prompts = {item.key: row_prompt(benchmark, item, prompt_style) for item in items}
    # Similar lengths in one batch waste less compute on left padding.
    ordered = sorted(items, key=lambda item: -len(prompts[item.key]))
    written = 0
    with path.open("a", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter="\t", lineterminator="\n")
        if new_file:
            writer.writerow(output_columns(benchmark, CHUNK_COLUMNS))
        progress = tqdm(total=len(ordered), desc=benchmark.name, unit="q", dynamic_ncols=True)
        for batch in batched(ordered, batch_size):
            ready, images, rows = [], [], []
            for item in batch:
                if item.issues:
                    problem = "; ".join(item.issues)
                    logger.warning(
                        "%s %s: %s; not sent to the model", benchmark.path.name, item.describe(), problem
                    )
                    rows.append(_chunk_values(benchmark, item, "", problem))
                    continue
                try:
                    images.append(benchmark.load_image(item) if benchmark.has_images else None)
                except ImageLoadError as err:
                    logger.warning("%s; not sent to the model", err)
                    rows.append(_chunk_values(benchmark, item, "", err.reason))
                    continue
                ready.append(item)
            if ready:
                answers = generate([prompts[item.key] for item in ready], images)
                rows += [_chunk_values(benchmark, item, answer, "") for item, answer in zip(ready, answers)]
            writer.writerows(tsv_safe(row) for row in rows)
            stream.flush()
            written += len(rows)
            progress.update(len(batch))
        progress.close()
    return written


def merge_chunks(benchmark: Benchmark, output_dir: Path) -> Path | None:
    """Write `OUT/<dataset>.tsv` once every row is answered; None while rows are still missing."""
    answered = answered_rows(output_dir, benchmark.name)
    missing = [item for item in benchmark.items if item.key not in answered]
    if missing:
        logger.info("%s: %d rows still unanswered; not merging yet", benchmark.name, len(missing))
        return None
    columns = output_columns(benchmark, ("prediction", "extracted", "issue"))
    rows = []
    for item in benchmark.items:
        row = dict(answered[item.key])
        prediction = row.get("prediction", "")
        extraction = extract_yes_no(prediction) if benchmark.kind == "yorn" else extract_answer(prediction, item.options)
        row["extracted"] = extraction.letter or ""
        rows.append([row.get(column, "") for column in columns])
    path = output_dir / f"{benchmark.name}.tsv"
    atomic_write_rows(path, columns, rows)
    return path


def resolve_files(args: argparse.Namespace) -> list[Path]:
    if args.files:
        return list(args.files)
    if args.benchmark and args.data_root:
        return expand_benchmark(args.benchmark, args.data_root)
    raise BenchmarkFileError("give --files, or --benchmark NAME with --data-root DIR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.eval.run_benchmark", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-base", default=None, help="base LLM for LoRA / projector-only checkpoints")
    parser.add_argument(
        "--benchmark",
        default=None,
        help="MMMB, MMBench (MMBench_dev), MME, MMStar, SEEDBench_IMG, ScienceQA_IMG, RealWorldQA, MMBench_CN, "
        "general (those six), paper (all), or one file's name",
    )
    parser.add_argument("--data-root", type=Path, default=None, help="folder with the benchmark TSV files")
    parser.add_argument("--files", type=Path, nargs="+", default=None, help="benchmark TSV files")
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="default: outputs/eval/<model folder name>"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-chunks", type=int, default=None, help="default: torchrun WORLD_SIZE, else 1")
    parser.add_argument("--chunk-idx", type=int, default=None, help="default: torchrun RANK, else 0")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top-p", "--top_p", dest="top_p", type=float, default=None)
    parser.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if available, else cpu")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bf16 on GPU)")
    parser.add_argument(
        "--rule", choices=("auto", *RULES), default="auto", help="scoring rule (auto: per dataset)"
    )
    parser.add_argument("--language", default=None, help="force the item language (en zh pt ar tr ru)")
    parser.add_argument(
        "--prompt-style",
        choices=PROMPT_STYLES,
        default=DEFAULT_PROMPT_STYLE,
        help="ours (default), vlmevalkit (its English MCQ prompt) or parrot (its translated instruction)",
    )
    parser.add_argument(
        "--overwrite_output_dir",
        "--overwrite-output-dir",
        dest="overwrite_output_dir",
        action="store_true",
        help="answer afresh datasets already finished in --output-dir (default: such a folder is refused)",
    )
    return parser


def evaluate(
    benchmarks: list[Benchmark],
    output_dir: Path,
    get_model: Callable[[], LoadedModel],
    *,
    model_name: str,
    num_chunks: int = 1,
    chunk_idx: int = 0,
    batch_size: int = 8,
    rule: str | None = None,
    overwrite: bool = False,
    prompt_style: str = DEFAULT_PROMPT_STYLE,
) -> list[Accuracy | MMEResult] | None:
    """Answer this process's shard of every benchmark, then merge and score if all rows are answered.

    `get_model` is called only when some row still needs an answer. Returns the accuracies, or
    None while other chunks are still unanswered. Raises `FinishedRunError` when a benchmark is
    already finished in `output_dir` and `overwrite` is off (`llava.eval.output_guard`).
    """
    names = [benchmark.name for benchmark in benchmarks]
    guard_eval_output_dir(output_dir, names, overwrite=overwrite, num_chunks=num_chunks, chunk_idx=chunk_idx)
    work = []
    for benchmark in benchmarks:
        done = answered_rows(output_dir, benchmark.name)
        pending = [item for item in get_chunk(benchmark.items, num_chunks, chunk_idx) if item.key not in done]
        logger.info(
            "%s [%s]: chunk %d of %d, %d rows to answer",
            benchmark.name,
            benchmark.language,
            chunk_idx,
            num_chunks,
            len(pending),
        )
        work.append((benchmark, pending))
    if any(pending for _, pending in work):
        model = get_model()
        for benchmark, pending in work:
            if pending:
                first = row_prompt(benchmark, pending[0], prompt_style)
                logger.info(
                    "%s, first prompt:\n%s", benchmark.name, model.render_prompt(first, benchmark.has_images)
                )
            path = chunk_path(output_dir, benchmark.name, num_chunks, chunk_idx)
            answer_benchmark(
                benchmark, model.generate, path, pending, batch_size=batch_size, prompt_style=prompt_style
            )
    merged = [merge_chunks(benchmark, output_dir) for benchmark in benchmarks]
    if any(path is None for path in merged):
        logger.info("other chunks are still unanswered; the last chunk to finish scores everything")
        return None
    results = [
        score_file(path, rule=None if b.kind == "yorn" else rule, language=b.language, prompt_style=prompt_style)
        for path, b in zip(merged, benchmarks)
    ]
    print(write_summary(results, output_dir, model_name))
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    num_chunks, chunk_idx = resolve_shard(args.num_chunks, args.chunk_idx)
    try:
        benchmarks = [read_benchmark(path, language=args.language) for path in resolve_files(args)]
    except BenchmarkFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model_name = Path(args.model_path.rstrip("/")).name
    get_model = model_loader(args)
    try:
        results = evaluate(
            benchmarks,
            args.output_dir or Path("outputs") / "eval" / model_name,
            get_model,
            model_name=model_name,
            num_chunks=num_chunks,
            chunk_idx=chunk_idx,
            batch_size=args.batch_size,
            rule=None if args.rule == "auto" else args.rule,
            overwrite=args.overwrite_output_dir,
            prompt_style=args.prompt_style,
        )
    except (FinishedRunError, SummaryMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if results:
        record_results_on_card(args.model_path, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
