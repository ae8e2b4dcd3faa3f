"""Command line: `python -m llava.data.translate INPUT --langs zh,pt --base-url URL --model NAME --out DIR`
and `python -m llava.data.translate apply-review SHEET [--out DIR]`.

Everything that can be wrong with the command (input, languages, key, endpoint, model) is checked
before the first translation request. Exit status: 0 done, 1 stopped by an endpoint error,
2 bad command, 3 unfinished (request budget spent, or units left failing: rerun to continue).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from llava.data.translate.checks import QualityChecks
from llava.data.translate.client import ChatTranslator, ClientSettings, EndpointError, Usage, check_endpoint
from llava.data.translate.engine import TranslationRun, survey_units, units_to_run
from llava.data.translate.journal import Journal, JournalError
from llava.data.translate.languages import UnknownLanguage, lingua_language, parse_langs
from llava.data.translate.outputs import (
    JOURNAL,
    InputError,
    LanguageReport,
    assemble,
    output_path,
    read_input,
    read_manifest,
    write_manifest,
    write_outputs,
)
from llava.data.translate.progress import LanguageBars
from llava.data.translate.review import ReviewError, apply_review, write_review_sheets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llava.data.translate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="LLaVA .json (a list of items) or .jsonl file")
    parser.add_argument("--langs", required=True, help="target ISO 639-1 codes, comma-separated: zh,pt,ar,tr,ru")
    parser.add_argument("--source-lang", default="en", help="language of INPUT (default %(default)s)")
    parser.add_argument("--base-url", required=True, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", required=True, help="model name the endpoint serves")
    parser.add_argument("--out", type=Path, required=True, help="output folder (journal, final files, rejects)")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=ClientSettings.concurrency, help="requests in flight at most (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=ClientSettings.timeout, help="seconds per request before retrying (default %(default)s)")
    parser.add_argument("--retries", type=int, default=ClientSettings.retries, help="retries per request on 429/5xx/timeouts (default %(default)s)")
    parser.add_argument("--backoff", type=float, default=ClientSettings.backoff,
                        help="first retry wait in seconds, doubled each retry (default %(default)s)")
    parser.add_argument("--max-requests", type=int, default=None, help="stop after this many requests (retries count)")
    parser.add_argument("--temperature", type=float, default=ClientSettings.temperature, help="(default %(default)s)")
    parser.add_argument("--retry-rejects", action="store_true",
                        help="send rejected answers once more with a stricter prompt naming the reason")
    parser.add_argument("--review-sample", type=int, default=0, metavar="N",
                        help="write review sheets (HTML + CSV) of N random accepted items per language")
    parser.add_argument("--seed", type=int, default=0, help="seed of the review sample (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _fail(message: str) -> None:
    print(f"llava.data.translate: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _settings(args: argparse.Namespace) -> ClientSettings:
    if args.concurrency < 1 or args.retries < 0 or (args.max_requests is not None and args.max_requests < 1):
        _fail("--concurrency and --max-requests must be at least 1, --retries at least 0")
    api_key = os.environ.get(args.api_key_env)
    if not api_key:
        _fail(f"no API key: set ${args.api_key_env} (any non-empty value for a local server that takes none), "
              "or name another variable with --api-key-env")
    return ClientSettings(base_url=args.base_url, model=args.model, api_key=api_key, key_source=f"${args.api_key_env}",
                          concurrency=args.concurrency, timeout=args.timeout, retries=args.retries,
                          backoff=args.backoff, max_requests=args.max_requests, temperature=args.temperature)


async def _translate(args, settings, journal, checks, units, survey) -> tuple[TranslationRun, Usage]:
    langs = list(survey.totals)
    done = {lang: survey.totals[lang] - survey.todo[lang] for lang in langs}
    bars = LanguageBars(dict(survey.totals), done, {lang: survey.rejected[lang] for lang in langs}, disable=args.no_progress)
    translator = ChatTranslator(settings, on_in_flight=bars.set_in_flight)
    run = TranslationRun(journal, translator, checks, args.source_lang, args.retry_rejects,
                         workers=2 * args.concurrency)
    start = time.perf_counter()
    try:
        await run.run(units, bars)
    finally:
        translator.usage.seconds = time.perf_counter() - start
        bars.close()
        await translator.aclose()
    return run, translator.usage


def _print_summary(reports: dict[str, LanguageReport], usage: Usage, budget: int | None, out: Path, stem: str) -> None:
    for lang, report in reports.items():
        rate = "n/a" if report.acceptance_rate is None else f"{100 * report.acceptance_rate:.1f}%"
        reasons = ", ".join(f"{reason} {n}" for reason, n in report.rejected.most_common()) or "none"
        print(f"{lang}: {report.items} items: {report.accepted} accepted, {sum(report.rejected.values())} rejected "
              f"({reasons}), {report.pending} pending; acceptance rate {rate} -> {output_path(out, stem, lang)}")
    errors = ", ".join(f"{kind} x{n}" for kind, n in usage.errors.most_common()) or "none"
    rate = usage.requests / usage.seconds if usage.seconds else 0.0
    print(f"requests: {usage.requests} sent in {usage.seconds:.2f} s ({rate:.1f}/s; {usage.retried} retries; errors: {errors})"
          + (f" of a budget of {budget}" if budget is not None else ""))
    print(f"tokens reported by the server: prompt {usage.prompt_tokens}, completion {usage.completion_tokens}, "
          f"total {usage.prompt_tokens + usage.completion_tokens}")


def translate_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        langs = parse_langs(args.langs)
        lingua_language(args.source_lang)
        if args.source_lang in langs:
            raise UnknownLanguage(f"--langs includes the source language {args.source_lang}; leave it out")
        items = read_input(args.input)
    except (UnknownLanguage, InputError) as err:
        _fail(str(err))
    settings = _settings(args)
    previous = read_manifest(args.out) if args.out.is_dir() else None
    if previous is not None and previous["input"] != str(args.input.resolve()):
        _fail(f"--out {args.out} holds a run over {previous['input']}; use another --out for {args.input}")
    try:
        check_endpoint(settings)
    except EndpointError as err:
        _fail(str(err))
    checks = QualityChecks(langs, args.source_lang)
    args.out.mkdir(parents=True, exist_ok=True)
    write_manifest(args.out, args.input, langs, args.source_lang)
    all_langs = read_manifest(args.out)["langs"]
    try:
        journal = Journal(args.out / JOURNAL)
    except JournalError as err:
        _fail(str(err))
    survey = survey_units(journal, items, langs, args.retry_rejects)
    total, todo = sum(survey.totals.values()), sum(survey.todo.values())
    print(f"{len(items)} items x {len(langs)} languages: {total} turns, {total - todo} already "
          f"in {args.out / JOURNAL}, {todo} to translate", flush=True)
    units = units_to_run(journal, items, langs, args.retry_rejects)
    interrupted = False
    with journal:
        try:
            run, usage = asyncio.run(_translate(args, settings, journal, checks, units, survey))
        except KeyboardInterrupt:
            interrupted, run, usage = True, None, Usage()
        reports = write_outputs(args.out, args.input.stem, items, all_langs, journal)
        if args.review_sample > 0:
            for lang in langs:
                accepted = assemble(items, lang, journal)[0]
                path = write_review_sheets(args.out, args.input.stem, lang, items, accepted, args.review_sample, args.seed)
                print(f"review sheet: {path.with_suffix('.html')} (and {path.name})")
    _print_summary({lang: reports[lang] for lang in langs}, usage, args.max_requests, args.out, args.input.stem)
    if interrupted:
        print("interrupted: rerun the same command to continue", file=sys.stderr)
        return 130
    if run.stop_reason:
        print(f"stopped: {run.stop_reason}", file=sys.stderr)
    if run.fatal:
        return 1
    if any(reports[lang].pending for lang in langs):
        print("unfinished: rerun the same command to continue", file=sys.stderr)
        return 3
    return 0


def apply_review_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m llava.data.translate apply-review",
                                     description="Import a review sheet's corrections and rejections.")
    parser.add_argument("sheet", type=Path, help="CSV written by --review-sample or exported from the HTML page")
    parser.add_argument("--out", type=Path, default=None, help="the translation run's folder (default: found from SHEET)")
    args = parser.parse_args(argv)
    try:
        stats = apply_review(args.sheet, args.out)
    except (ReviewError, InputError, JournalError) as err:
        _fail(str(err))
    for lang, counts in sorted(stats.items()):
        reviewed = counts["reviewed"]
        rate = 100 * (reviewed - counts["rejected"]) / reviewed
        print(f"{lang}: {reviewed} items reviewed, {counts['corrected']} corrected, {counts['rejected']} rejected; "
              f"reviewers accepted {rate:.1f}%")
    return 0


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("llava").setLevel(logging.INFO)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "apply-review":
        raise SystemExit(apply_review_main(argv[1:]))
    raise SystemExit(translate_main(argv))
