"""Load test of the OpenAI-compatible API: continuous batching against one request at a time.

    python bench/serve_load.py                       # 8 clients x 4 requests, 64 tokens, 3 rounds
    python bench/serve_load.py --clients 16 --requests-per-client 8 --rounds 5

Two API servers run as subprocesses on 127.0.0.1 (`python -m llava.serve.api`), the same tiny
checkpoint behind both: one with `--max-batch-size 1` (serial: a request waits until the one
before it has finished) and one with `--max-batch-size 8` (batched). `--clients` threads in this
process each send `--requests-per-client` requests back to back. Of the requests, `--stream-fraction`
stream (SSE) and, of those, `--cancel-fraction` close the connection half-way through the answer;
half carry an image. Every request asks for `--max-tokens` tokens with `ignore_eos` (the untrained
model would otherwise stop at random), sampled at temperature 1 with its own seed.

The machine is shared: the two servers take turns for `--rounds` rounds after a warm-up each, and
medians are reported. Per run: requests/s, tokens/s, p50/p95 latency (request sent to last byte),
p50/p95 time to first token (streams), and failed requests (an HTTP error, a broken stream, or a
stream that ended without `[DONE]` although it was not cancelled). The last line reads
`batched vs serial throughput at N clients: N.NNx` (requests/s, median over rounds of the ratio
within a round).

    python bench/serve_load.py --mode features       # what n, logprobs, penalties, logit_bias cost

`--mode features` runs one batched server and the same load once per feature in `FEATURES`
(whole answers, no streams): plain sampling, `n: 4`, `logprobs` with `top_logprobs: 5`, the three
penalties together, and a 100-token `logit_bias`; it reports tokens/s of each (the `n` samples'
tokens all count) against plain sampling, median over `--rounds`.

The model is the quickstart's shape: LLaMA (SmolLM2's 49k vocabulary) with 4 layers of width 128,
a CLIP tower of width 64 on 64 px images with 8 px patches, and the parrot_moe projector, untrained,
built from pip-shipped tokenizer files into `--work-dir` (reused on later runs; nothing is
downloaded). Servers use `--threads` torch threads each (default 1: with more threads than free
cores, OpenMP waits make timings swing).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import requests  # noqa: E402
from PIL import Image  # noqa: E402

QUICKSTART_SIZES = dict(hidden_size=128, layers=4, heads=4, vision_hidden_size=64, vision_layers=2, image_size=64, patch_size=8)
PROMPTS = ["Describe the picture.", "这个形状是什么颜色？", "Qual é a cor?", "ما هذا؟", "Bu ne renk?", "Какого цвета фигура?"]


def build_checkpoint(work_dir: Path) -> Path:
    """The untrained quickstart-shaped parrot_moe checkpoint under `work_dir` (built once)."""
    out = work_dir / "tiny_parrot_quickstart"
    if (out / "config.json").exists():
        return out
    import parrot_moe  # noqa: F401  (registers the projector)
    from llava.tiny import build_tiny_assets, save_tiny_llava

    assets = build_tiny_assets(work_dir / "assets_quickstart", seed=0, **QUICKSTART_SIZES)
    return save_tiny_llava(assets, out, llm="llama", mm_projector_type="parrot_moe", mm_vision_select_feature="cls_patch")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m llava.serve.api` on 127.0.0.1 in a subprocess, logging to `log`."""

    def __init__(self, checkpoint: Path, max_batch_size: int, threads: int, log: Path, max_tokens: int):
        self.max_batch_size, self.port = max_batch_size, free_port()
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        command = [sys.executable, "-m", "llava.serve.api", "--model-path", str(checkpoint), "--port", str(self.port),
                   "--max-batch-size", str(max_batch_size), "--max-concurrency", "256", "--max-new-tokens", str(max_tokens)]
        self.log = log.open("w")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.process.returncode}; see {self.log.name}")
            try:
                if requests.get(f"{self.url}/health", timeout=10).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the server did not get ready within {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


@dataclass
class Outcome:
    latency: float
    ttft: float | None
    tokens: int
    failed: str | None = None


@dataclass
class RunStats:
    name: str
    seconds: float
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [o.failed for o in self.outcomes if o.failed]

    @property
    def requests_per_s(self) -> float:
        return len(self.outcomes) / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return sum(o.tokens for o in self.outcomes) / self.seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def png_data_url(rng: random.Random) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3))).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def one_request(url: str, rng: random.Random, args: argparse.Namespace) -> Outcome:
    text = rng.choice(PROMPTS)
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": png_data_url(rng)}}] \
        if rng.random() < 0.5 else text
    stream = rng.random() < args.stream_fraction
    cancel_after = args.max_tokens // 2 if stream and rng.random() < args.cancel_fraction else None
    payload = {"messages": [{"role": "user", "content": content}], "max_tokens": args.max_tokens, "temperature": 1.0,
               "seed": rng.randrange(2**31), "ignore_eos": True, "stream": stream,
               "stream_options": {"include_usage": True} if stream else None, **getattr(args, "extra", {})}
    started = time.perf_counter()
    try:
        with requests.post(f"{url}/v1/chat/completions", json=payload, stream=stream, timeout=600) as response:
            if response.status_code != 200:
                return Outcome(time.perf_counter() - started, None, 0, f"HTTP {response.status_code}: {response.text[:200]}")
            if not stream:
                return Outcome(time.perf_counter() - started, None, response.json()["usage"]["completion_tokens"])
            return read_stream(response, started, cancel_after)
    except requests.RequestException as err:
        return Outcome(time.perf_counter() - started, None, 0, f"{type(err).__name__}: {err}")


def read_stream(response: requests.Response, started: float, cancel_after: int | None) -> Outcome:
    """Read SSE events; close the connection after `cancel_after` content chunks (None: read to the end)."""
    ttft, chunks, tokens = None, 0, 0
    for line in response.iter_lines():
        if not line:
            continue
        data = line.decode()[len("data: "):]
        if data == "[DONE]":
            return Outcome(time.perf_counter() - started, ttft, tokens or chunks)
        event = json.loads(data)
        if "error" in event:
            return Outcome(time.perf_counter() - started, ttft, chunks, f"in-stream error: {event['error']['message']}")
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
        if event["choices"] and event["choices"][0]["delta"].get("content"):
            chunks += 1
            ttft = ttft if ttft is not None else time.perf_counter() - started
            if cancel_after is not None and chunks >= cancel_after:
                response.close()
                return Outcome(time.perf_counter() - started, ttft, chunks)
    return Outcome(time.perf_counter() - started, ttft, chunks, "the stream ended without [DONE]")


def run_load(server: Server, args: argparse.Namespace, seed: int) -> RunStats:
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)  # the same requests for both servers in a round
        for _ in range(args.requests_per_client):
            outcome = one_request(server.url, rng, args)
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    name = f"{'batched' if server.max_batch_size > 1 else 'serial'} (max batch {server.max_batch_size})"
    return RunStats(name, time.perf_counter() - started, outcomes)


def report(stats: RunStats, label: str) -> None:
    latencies = [o.latency for o in stats.outcomes]
    ttfts = [o.ttft for o in stats.outcomes if o.ttft is not None]
    print(f"{stats.name:<22} {label:<8} {len(stats.outcomes)} requests in {stats.seconds:6.1f} s: "
          f"{stats.requests_per_s:5.2f} req/s, {stats.tokens_per_s:6.0f} tok/s, latency p50 {percentile(latencies, 0.5):5.2f} s "
          f"p95 {percentile(latencies, 0.95):5.2f} s, TTFT p50 {percentile(ttfts, 0.5):5.2f} s p95 {percentile(ttfts, 0.95):5.2f} s, "
          f"failed {len(stats.failures)}", flush=True)
    for failure in stats.failures[:3]:
        print(f"    failure: {failure}", flush=True)


FEATURES = {
    "plain": {},
    "n=4": {"n": 4},
    "logprobs top 5": {"logprobs": True, "top_logprobs": 5},
    "penalties": {"frequency_penalty": 0.5, "presence_penalty": 0.5, "repetition_penalty": 1.2},
    "logit_bias x100": {"logit_bias": {str(i): 1.0 for i in range(1000, 1100)}},
}


def run_features(server: Server, args: argparse.Namespace) -> None:
    """Tokens/s of each of FEATURES against plain sampling on the batched server."""
    rates: dict[str, list[float]] = {name: [] for name in FEATURES}
    for round_index in range(args.rounds):
        for name, extra in FEATURES.items():
            stats = run_load(server, argparse.Namespace(**{**vars(args), "stream_fraction": 0.0, "extra": extra}), round_index)
            stats.name = name
            report(stats, f"round {round_index + 1}")
            rates[name].append(stats.tokens_per_s)
    print()
    plain = statistics.median(rates["plain"])
    for name, values in rates.items():
        print(f"{name:<16} median {statistics.median(values):7.0f} tok/s = {statistics.median(values) / plain:.2f}x plain")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=8, help="of the batched server")
    parser.add_argument("--stream-fraction", type=float, default=0.5)
    parser.add_argument("--cancel-fraction", type=float, default=0.25, help="of the streams")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per server")
    parser.add_argument("--mode", choices=("batching", "features"), default="batching",
                        help="batching: batched vs serial server; features: what n, logprobs, penalties cost")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "parrot_bench")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = build_checkpoint(args.work_dir)
    if args.mode == "features":
        server = Server(checkpoint, args.max_batch_size, args.threads, args.work_dir / "server_features.log", args.max_tokens)
        try:
            server.wait_ready()
            run_load(server, argparse.Namespace(**{**vars(args), "requests_per_client": 1}), seed=999)  # warm-up
            run_features(server, args)
        finally:
            server.stop()
        return
    servers = [Server(checkpoint, size, args.threads, args.work_dir / f"server_batch{size}.log", args.max_tokens)
               for size in (1, args.max_batch_size)]
    try:
        for server in servers:
            server.wait_ready()
            run_load(server, argparse.Namespace(**{**vars(args), "requests_per_client": 1}), seed=999)  # warm-up
        runs: dict[str, list[RunStats]] = {}
        ratios = []
        for round_index in range(args.rounds):
            order = servers if round_index % 2 == 0 else servers[::-1]
            results = {server.max_batch_size: run_load(server, args, seed=round_index) for server in order}
            for stats in results.values():
                runs.setdefault(stats.name, []).append(stats)
                report(stats, f"round {round_index + 1}")
            ratios.append(results[args.max_batch_size].requests_per_s / results[1].requests_per_s)
        print()
        for stats_list in runs.values():
            median = sorted(stats_list, key=lambda s: s.requests_per_s)[len(stats_list) // 2]
            report(median, "median")
        failed = sum(len(stats.failures) for stats_list in runs.values() for stats in stats_list)
        print(f"failed requests: {failed} of {sum(len(s.outcomes) for sl in runs.values() for s in sl)}")
        print(f"batched vs serial throughput at {args.clients} clients: {statistics.median(ratios):.2f}x")
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
