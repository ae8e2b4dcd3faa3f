"""Translation throughput: concurrency 8 against concurrency 1, side by side, on a loopback server.

    python bench/translate_throughput.py                  # 48 distinct strings, 200 ms per request
    python bench/translate_throughput.py --requests 96 --latency 0.2 --repeats 3

The server is the test suite's fake OpenAI-compatible translator (tests/translation_server.py)
with a fixed latency per request, in its own process on 127.0.0.1 (as a real endpoint would be:
its CPU time is not the client's). Each run is the whole command
(`llava.data.translate.cli.translate_main`: input checks, endpoint check, requests, checks,
journal, final files) into a fresh output folder, over single-turn items whose texts are all
distinct, so every unit is one request and the cache never helps. The language detector is
loaded, and one small untimed run warms up the imports and the server, before timing. Runs
alternate between the two settings for `--repeats` rounds; medians are reported.

Two figures: the whole command's wall time (start-up and the final files included, a cost paid
once per run), and the throughput while translating, which the command prints itself ("requests:
N sent in S s") and which decides the hours a long run takes. The last line,
`concurrency 8 vs 1: N.NNx`, is the throughput ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "tests" / "translation_server.py"
sys.path.insert(0, str(SERVER.parent))

from translation_server import MODEL  # noqa: E402

from llava.data.translate.checks import QualityChecks  # noqa: E402
from llava.data.translate.cli import translate_main  # noqa: E402
from playground.easyvqa.translations import COLORS, SHAPES, load_table  # noqa: E402

_SENT = re.compile(r"requests: (\d+) sent in ([0-9.]+) s")


def distinct_items(count: int) -> list[dict]:
    table = load_table()
    questions = sorted({table.question(t, "en", c, s) for t in table.templates for c in COLORS for s in SHAPES})
    if count > len(questions):
        raise SystemExit(f"--requests {count}: at most {len(questions)} distinct easy-VQA questions")
    return [{"id": f"q{i}", "conversations": [{"from": "human", "value": q}]} for i, q in enumerate(questions[:count])]


@contextlib.contextmanager
def server_process(latency: float):
    """The fake translator in a child process; yields its base URL."""
    process = subprocess.Popen([sys.executable, str(SERVER), str(latency)], stdout=subprocess.PIPE, text=True)
    try:
        yield process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait()


def timed_run(base_url: str, source: Path, work: Path, concurrency: int, round_: int) -> tuple[float, float]:
    """(whole command seconds, translating seconds) of one run."""
    out = work / f"{source.stem}_c{concurrency}_r{round_}"
    argv = [str(source), "--langs", "zh", "--base-url", base_url, "--model", MODEL, "--out", str(out),
            "--concurrency", str(concurrency), "--no-progress"]
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        code = translate_main(argv)
    elapsed = time.perf_counter() - start
    sent = _SENT.search(printed.getvalue())
    if code != 0 or sent is None:
        raise SystemExit(f"translation run failed (exit status {code}):\n{printed.getvalue()}")
    accepted = len(json.loads((out / f"{source.stem}_zh.json").read_text()))
    label = "warm-up" if round_ < 0 else f"round {round_}"
    print(f"concurrency {concurrency} {label}: {sent.group(1)} requests, translating {float(sent.group(2)):.2f} s, "
          f"whole command {elapsed:.2f} s, {accepted} items accepted")
    return elapsed, float(sent.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=48, help="distinct strings, one request each")
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per request")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "bench")
    QualityChecks(["zh"], "en")  # the detector loads once per process: not part of either timing
    runs: dict[int, list[tuple[float, float]]] = {1: [], 8: []}
    with tempfile.TemporaryDirectory() as tmp, server_process(args.latency) as base_url:
        work = Path(tmp)
        source = work / "questions.json"
        source.write_text(json.dumps(distinct_items(args.requests)))
        warm_up = work / "warm_up.json"
        warm_up.write_text(json.dumps(distinct_items(4)))
        timed_run(base_url, warm_up, work, 8, -1)
        for round_ in range(args.repeats):
            for concurrency in (1, 8):
                runs[concurrency].append(timed_run(base_url, source, work, concurrency, round_))
    whole = {c: statistics.median(r[0] for r in runs[c]) for c in runs}
    translating = {c: statistics.median(r[1] for r in runs[c]) for c in runs}
    for c in (1, 8):
        print(f"concurrency {c}: {args.requests} requests x {args.latency * 1000:.0f} ms: translating "
              f"{translating[c]:.2f} s ({args.requests / translating[c]:.1f} requests/s), whole command {whole[c]:.2f} s")
    print(f"whole command, concurrency 8 vs 1: {whole[1] / whole[8]:.2f}x")
    print(f"concurrency 8 vs 1: {translating[1] / translating[8]:.2f}x")


if __name__ == "__main__":
    main()
