"""Score existing predictions with no model: `python -m llava.eval.score PRED.tsv [PRED.tsv ...]`.

Input: VLMEvalKit-layout predictions (benchmark columns plus `prediction`), such as VLMEvalKit's
own outputs saved as TSV or this package's `<dataset>.tsv`. Beside each file it writes
`<name>_result.tsv` and `<name>_acc.csv` (with an `Overall` column); each benchmark's
`summary_<benchmark>.md/.csv/.json` and `radar_<benchmark>.png` (`summary_mmmb.md`,
`radar_mmbench.png`, see `llava.eval.summary`) go to `--summary-dir` (default: the first file's
directory), merged into what is already there: scoring one file updates its language and keeps the
others. The markdown table is printed. The rule defaults per dataset name (MMBench circular, MMMB pair, else vanilla; see
`llava.eval.scoring`); `--rule` overrides it.

VLMEvalKit prediction files drop the `image` column, which the MMMB pair rule needs: pass the
benchmark TSVs with `--data-root DIR` and the image of each row is looked up there by index.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from llava.eval.benchmark import Benchmark, BenchmarkFileError, read_benchmark
from llava.eval.judge import Judge, load_judge
from llava.eval.languages import language_from_name
from llava.eval.mme import MMEResult, rate_mme, score_yes_no_rows
from llava.eval.mme_reports import write_mme_summary, write_score_csv
from llava.eval.prompts import DEFAULT_PROMPT_STYLE, PROMPT_STYLES, check_prompt_style
from llava.eval.reports import write_acc_csv, write_scored_predictions
from llava.eval.scoring import RULES, Accuracy, accuracy, default_rule, score_rows
from llava.eval.summary import SummaryMismatchError, write_summaries

logger = logging.getLogger(__name__)


def result_paths(prediction_file: Path, kind: str = "mcq") -> tuple[Path, Path]:
    """(`<name>_result.tsv`, `<name>_acc.csv`) beside a predictions file (`<name>_score.csv` for MME)."""
    stem = prediction_file.with_suffix("")
    return Path(f"{stem}_result.tsv"), Path(f"{stem}_{'score' if kind == 'yorn' else 'acc'}.csv")


def attach_image_keys(predictions: Benchmark, data_root: Path) -> None:
    """Fill missing pair keys from the benchmark TSV in `data_root` whose name ends the file's name."""
    candidates = sorted(data_root.glob("*.tsv"), key=lambda p: -len(p.stem))
    source = next((p for p in candidates if predictions.name.lower().endswith(p.stem.lower())), None)
    if source is None:
        logger.warning(
            "--data-root %s has no benchmark file matching %s; pairs stay unknown",
            data_root,
            predictions.name,
        )
        return
    by_index = {item.index: item.image_key for item in read_benchmark(source).items if item.index is not None}
    for item in predictions.items:
        if item.image_key is None and item.index is not None:
            item.image_key = by_index.get(item.index)


def score_file(
    path: Path,
    *,
    rule: str | None = None,
    judge: Judge | None = None,
    language: str | None = None,
    data_root: Path | None = None,
    prompt_style: str = DEFAULT_PROMPT_STYLE,
) -> Accuracy | MMEResult:
    """Score one predictions file and write its `_result.tsv` and `_acc.csv` beside it (MME: its
    VLMEvalKit rating and `_score.csv`, see `llava.eval.mme`). `prompt_style` is recorded."""
    check_prompt_style(prompt_style)
    predictions = read_benchmark(path, language=language)
    if "prediction" not in predictions.columns:
        logger.warning("%s has no 'prediction' column: every row is scored wrong", path)
    if predictions.kind == "yorn":
        if rule not in (None, "mme"):
            raise BenchmarkFileError(f"{path} is an MME file, scored by the MME rule only; drop --rule {rule}")
        yes_no_rows = score_yes_no_rows(predictions)
        mme = rate_mme(predictions, yes_no_rows, prompt_style)
        result_tsv, score_csv = result_paths(path, "yorn")
        write_scored_predictions(predictions, yes_no_rows, result_tsv)
        write_score_csv(mme, score_csv)
        logger.info("%s [MME]: perception %.2f, cognition %.2f", path.name, mme.perception, mme.cognition)
        return mme
    if data_root is not None and not predictions.has_images:
        attach_image_keys(predictions, data_root)
    rows = score_rows(predictions, judge)
    result = accuracy(predictions, rows, rule or default_rule(predictions.name), prompt_style)
    result_tsv, acc_csv = result_paths(path)
    write_scored_predictions(predictions, rows, result_tsv)
    write_acc_csv(result, acc_csv)
    logger.info(
        "%s [%s, %s]: Overall %.2f%%", path.name, result.language, result.rule, 100 * result.overall.accuracy
    )
    return result


def write_summary(results: list[Accuracy | MMEResult], directory: Path, model_name: str) -> str:
    """Merge `results` into each benchmark's summary and radar in `directory` (`llava.eval.summary`;
    MME's in `summary_mme.md`, `llava.eval.mme_reports`)."""
    mme = [r for r in results if isinstance(r, MMEResult)]
    others = [r for r in results if not isinstance(r, MMEResult)]
    parts = [write_summaries(others, directory, model_name)] if others else []
    if mme:
        parts.append(write_mme_summary(mme, directory, model_name))
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llava.eval.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", nargs="+", type=Path, help="predictions TSV files (VLMEvalKit layout)")
    parser.add_argument(
        "--rule", choices=("auto", *RULES), default="auto", help="scoring rule (auto: per dataset)"
    )
    parser.add_argument(
        "--language", default=None, help="force the language of every file (en zh pt ar tr ru)"
    )
    parser.add_argument(
        "--judge", default=None, help="judge for unreadable answers: URL or package.module:function"
    )
    parser.add_argument("--judge-model", default="gpt-4o-mini", help="model name sent to a judge endpoint")
    parser.add_argument(
        "--judge-api-key-env", default="OPENAI_API_KEY", help="env variable holding the API key"
    )
    parser.add_argument(
        "--data-root", type=Path, default=None, help="benchmark TSVs, to recover MMMB image pairs"
    )
    parser.add_argument(
        "--summary-dir", type=Path, default=None, help="where summary_<benchmark>.md/csv/json and radar_<benchmark>.png go"
    )
    parser.add_argument(
        "--model-name", default=None, help="label in the summary (default: the first file's folder)"
    )
    parser.add_argument(
        "--prompt-style",
        choices=PROMPT_STYLES,
        default=DEFAULT_PROMPT_STYLE,
        help="the prompt style the predictions were made with, recorded in the summary",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    judge = (
        load_judge(args.judge, model=args.judge_model, api_key_env=args.judge_api_key_env)
        if args.judge
        else None
    )
    rule = None if args.rule == "auto" else args.rule
    results = []
    try:
        for path in args.predictions:
            if args.language is None and language_from_name(path) is None:
                logger.info("%s names no language; detecting it from the text", path.name)
            results.append(
                score_file(
                    path,
                    rule=rule,
                    judge=judge,
                    language=args.language,
                    data_root=args.data_root,
                    prompt_style=args.prompt_style,
                )
            )
    except BenchmarkFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary_dir = args.summary_dir or args.predictions[0].resolve().parent
    model_name = args.model_name or args.predictions[0].resolve().parent.name
    try:
        print(write_summary(results, summary_dir, model_name))
    except SummaryMismatchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
