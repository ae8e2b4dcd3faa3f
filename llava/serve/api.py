"""OpenAI-compatible HTTP API: `python -m llava.serve.api --model-path CKPT --port 8000`.

Endpoints: `POST /v1/chat/completions` (images as base64 `image_url` data URLs; `"stream": true`
answers with server-sent events `data: {chunk}` and a final `data: [DONE]`), `GET /v1/models`,
`GET /health`, `GET /metrics` (Prometheus). Binds 127.0.0.1 unless `--host` says otherwise; with
`--api-key` (or `PARROT_API_KEY`) every route but `/health` and `/metrics` needs
`Authorization: Bearer <key>`, and a non-loopback `--host` without a key refuses to start unless
`--allow-no-auth` is given.

Requests are decoded in continuous batches of up to `--max-batch-size` (`ChatEngine`); at most
`--max-concurrency` chat requests are queued or running, the others get 503 at once. The port opens
while the model loads; `/health` says when it is ready. The app is built by `llava.serve.app`, and
served by `llava.serve.http_server` (request-head deadlines, bounded shutdown).

Exit codes: 0 after a clean shutdown (SIGTERM or SIGINT: streams get an in-band error and
`[DONE]`, then the process ends), 1 when the model failed to load, 2 for a refused configuration
(bad flags, or a network `--host` without an API key).

FastAPI + uvicorn rather than `http.server`: both come with gradio (the `serve` extra), and they
give HTTP/1.1 keep-alive and chunked SSE streaming without hand-written protocol code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from llava.optional import require_extra

require_extra("serve", "python -m llava.serve.api" if __name__ == "__main__" else None)  # before what needs it

from llava.generation_defaults import GENERATION_DEFAULTS  # noqa: E402
from llava.serve.app import DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_STALL_S, create_app  # noqa: E402
from llava.serve.auth import API_KEY_ENV, InsecureBindError, check_network_exposure, resolve_api_key  # noqa: E402
from llava.serve.engine import DEFAULT_MAX_BATCH_SIZE, ChatEngine, SamplingParams  # noqa: E402
from llava.serve.inputs import pixel_limit  # noqa: E402

__all__ = ["create_app", "main", "parse_args"]

logger = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="OpenAI-compatible chat-completions server for a LLaVA/Parrot checkpoint")
    parser.add_argument("--model-path", required=True, help="checkpoint directory (config.json + weights)")
    parser.add_argument("--model-base", default=None, help="base model for LoRA or stage-1 projector checkpoints")
    parser.add_argument("--model-name", default=None, help="name reported by /v1/models (default: folder name)")
    parser.add_argument("--served-model-name", nargs="+", default=[], metavar="NAME",
                        help="more names a request's 'model' may give (listed by /v1/models); others get 404")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 exposes the API to the network")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer KEY' on every /v1 route (default: ${API_KEY_ENV})")
    parser.add_argument("--allow-no-auth", action="store_true",
                        help="serve a non-loopback --host without an API key (refused otherwise)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--device-map", default=None,
                        help="spread the model over devices with accelerate: 'auto' or a JSON dict (replaces --device)")
    parser.add_argument("--load-8bit", action="store_true", help="bitsandbytes 8-bit LLM weights (CUDA only)")
    parser.add_argument("--load-4bit", action="store_true", help="bitsandbytes 4-bit LLM weights (CUDA only)")
    parser.add_argument("--use-hub-kernels", action="store_true",
                        help="let transformers swap in kernels downloaded from the Hub (off: offline and CPU-safe)")
    parser.add_argument("--conv-mode", default=None, help="override the chat template saved in the checkpoint")
    parser.add_argument("--max-batch-size", type=_positive(int), default=DEFAULT_MAX_BATCH_SIZE,
                        help="requests decoded together; more wait and join as others finish")
    parser.add_argument("--max-request-mb", type=float, default=DEFAULT_MAX_REQUEST_BYTES / 2**20)
    parser.add_argument("--max-image-pixels", type=int, default=None, help=f"default: Pillow's limit, {pixel_limit():,}")
    parser.add_argument("--max-concurrency", type=_positive(int), default=16,
                        help="chat requests queued or running at once; more get HTTP 503 (idle connections do not count)")
    parser.add_argument("--header-timeout", type=_positive(float), default=DEFAULT_HEADER_TIMEOUT_S,
                        help="seconds a connection may take to send a complete request head; then it is closed")
    parser.add_argument("--body-timeout", type=_positive(float), default=DEFAULT_BODY_TIMEOUT_S,
                        help="seconds a request body may take to arrive; slower ones get HTTP 408")
    parser.add_argument("--stall-seconds", type=_positive(float), default=DEFAULT_STALL_S,
                        help="/health answers 503 when the running batch has not advanced for this long")
    parser.add_argument("--shutdown-timeout", type=_positive(int), default=DEFAULT_SHUTDOWN_TIMEOUT_S,
                        help="seconds shutdown waits for open requests before cancelling them")
    parser.add_argument("--max-new-tokens", type=int, default=GENERATION_DEFAULTS.max_new_tokens,
                        help="default when a request sets no max_tokens")
    parser.add_argument("--temperature", type=float, default=GENERATION_DEFAULTS.temperature,
                        help="default when a request sets none")
    parser.add_argument("--top-p", type=float, default=GENERATION_DEFAULTS.top_p, help="default when a request sets none")
    return parser.parse_args(argv)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def _engine_loader(args: argparse.Namespace) -> Callable[[], ChatEngine]:
    def load() -> ChatEngine:
        import torch

        from llava.model.builder import parse_device_map

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return ChatEngine.from_pretrained(
            args.model_path, args.model_base, device, args.conv_mode, args.model_name, args.max_image_pixels,
            args.max_batch_size, load_8bit=args.load_8bit, load_4bit=args.load_4bit, use_hub_kernels=args.use_hub_kernels,
            device_map=parse_device_map(args.device_map),
        )

    return load


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_key = resolve_api_key(args.api_key)
    try:
        check_network_exposure(args.host, api_key, args.allow_no_auth)
    except InsecureBindError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    defaults = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    from llava.serve.http_server import build_server

    failed: list[BaseException] = []
    server = None

    def stop_serving(error: BaseException) -> None:  # runs in the loading thread
        failed.append(error)
        if server is not None:
            server.should_exit = True

    app = create_app(
        _engine_loader(args), int(args.max_request_mb * 2**20), defaults, args.max_concurrency, args.body_timeout,
        args.stall_seconds, api_key=api_key, on_load_failure=stop_serving,
        served_model_names=tuple(args.served_model_name),
    )
    server = build_server(app, args.host, args.port, args.header_timeout, args.shutdown_timeout)
    if not failed:  # a load that failed before the server existed: nothing to serve
        server.run()
    if failed:
        print(f"error: loading {args.model_path} failed: {failed[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
