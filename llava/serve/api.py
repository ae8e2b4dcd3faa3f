"""OpenAI-compatible HTTP API: `python -m llava.serve.api --model-path CKPT --port 8000`.

Endpoints: `POST /v1/chat/completions` (images as base64 `image_url` data URLs; `"stream": true`
answers with server-sent events `data: {chunk}` and a final `data: [DONE]`), `GET /v1/models`,
`GET /health`. Binds 127.0.0.1 unless `--host` says otherwise. Bodies over `--max-request-mb` get
413, bodies slower than `--body-timeout` 408; malformed JSON and bad input get 400 with the reason
in OpenAI's error envelope; the server keeps serving after each.

FastAPI + uvicorn rather than `http.server`: both come with gradio (the `serve` extra), and they
give HTTP/1.1 keep-alive and chunked SSE streaming without hand-written protocol code. Generation
runs one request at a time (`ChatEngine`); at most `--max-concurrency` chat requests are queued or
running, and the others get 503 at once. Idle connections count for nothing (see `http_server`).

A client that goes away is noticed while its answer is generated: generation stops at the next
decoding step, and the engine is free for the next request as soon as the response ends, however
it ends. `/health` answers 503 when the running generation has not advanced for `--stall-seconds`.

No `from __future__ import annotations` here: FastAPI reads the handlers' annotations at runtime.
"""

import argparse
import json
import logging
import threading
from collections.abc import Callable, Iterator

from llava.optional import require_gradio
from llava.serve.engine import ChatEngine, GenerationResult, PreparedChat, SamplingParams
from llava.serve.engine_slot import GenerationCancelled
from llava.serve.inputs import BadInputError, decode_data_url, pixel_limit
from llava.serve.openai_protocol import (
    ChatRequest,
    chunk_body,
    completion_body,
    error_body,
    new_completion_id,
    parse_chat_request,
    usage,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 20 * 1024 * 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 10
DEFAULT_STALL_S = 120.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _TooLarge(Exception):
    pass


def _sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def _event_stream(
    engine: ChatEngine, request: ChatRequest, prepared: PreparedChat, cancel: threading.Event
) -> Iterator[bytes]:
    completion_id, result = new_completion_id(), GenerationResult()
    yield _sse(chunk_body(completion_id, engine.name, {"role": "assistant", "content": ""}))
    try:
        for delta in engine.stream(prepared, request.params, result, cancel):
            yield _sse(chunk_body(completion_id, engine.name, {"content": delta}))
    except Exception as err:  # the status line is already sent: report in-band, keep serving
        if not isinstance(err, GenerationCancelled):
            logger.exception("generation failed mid-stream")
        yield _sse(error_body(f"generation failed: {err}", kind="server_error"))
        yield _sse("[DONE]")
        return
    yield _sse(chunk_body(completion_id, engine.name, {}, result.finish_reason))
    if request.include_usage:
        tail = chunk_body(completion_id, engine.name, {})
        tail["choices"], tail["usage"] = [], usage(prepared, result)
        yield _sse(tail)
    yield _sse("[DONE]")


class _GenerationSlots:
    """Counts chat requests being validated, queued or generated; the event loop is its only user."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def try_take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def give_back(self) -> None:
        self.used -= 1


async def _cancel_on_disconnect(receive, cancel: threading.Event) -> None:
    """Set `cancel` once the client disconnects (the request body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    cancel.set()


def create_app(
    engine: ChatEngine,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    defaults: SamplingParams | None = None,
    max_concurrency: int = 16,
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
    stall_seconds: float = DEFAULT_STALL_S,
):
    """The FastAPI application serving `engine` (see the module docstring for the endpoints)."""
    require_gradio()  # fastapi and uvicorn come with gradio (the serve extra): one message if missing
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    from llava.serve.streaming import GenerationStream

    defaults = (defaults or SamplingParams()).checked()
    app = FastAPI(title="Parrot OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    slots = _GenerationSlots(max_concurrency)

    def refuse(message: str, status: int = 400) -> JSONResponse:
        logger.info("refused request (%d): %s", status, message)
        kind = "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse(error_body(message, kind=kind), status_code=status)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_request_bytes:
            raise _TooLarge
        body = bytearray()
        with anyio.fail_after(body_timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_request_bytes:
                    raise _TooLarge
        return bytes(body)

    def load_image(url: str):
        if not engine.accepts_images:
            raise BadInputError(f"{engine.name} is a text-only model; send the message without an image")
        return engine.check_image(decode_data_url(url, max_pixels=engine.max_image_pixels), "image_url")

    def validate(body: bytes) -> tuple[ChatRequest, PreparedChat]:
        try:
            payload = json.loads(body)
        except ValueError as err:
            raise BadInputError(f"the request body is not valid JSON ({err})") from err
        except RecursionError:
            raise BadInputError("the request body nests JSON arrays or objects too deeply to parse") from None
        request = parse_chat_request(payload, load_image, defaults)
        prepared = engine.prepare(request.message, request.history, request.image, request.image_turn, request.system)
        return request, prepared

    async def answer_whole(request: Request, chat: ChatRequest, prepared: PreparedChat):
        cancel = threading.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_disconnect, request.receive, cancel)
            try:
                result = await run_in_threadpool(engine.generate, prepared, chat.params, cancel)
            except BadInputError as err:
                return refuse(str(err))
            except GenerationCancelled as err:
                return refuse(f"generation cancelled: {err}", status=503)
            except Exception as err:
                logger.exception("generation failed")
                return refuse(f"generation failed: {err}", status=500)
            finally:
                group.cancel_scope.cancel()
        return completion_body(new_completion_id(), engine.name, prepared, result)

    @app.get("/health")
    async def health() -> JSONResponse:
        status = engine.status()
        since = status.seconds_since_progress
        stalled = since is not None and since > stall_seconds
        state = "shutting_down" if status.shutting_down else "stalled" if stalled else "ok"
        body = {
            "status": state,
            "model": engine.name,
            "generating": status.busy,
            "waiting": status.waiting,
            "seconds_since_progress": None if since is None else round(since, 1),
            "stall_seconds": stall_seconds,
        }
        return JSONResponse(body, status_code=200 if state == "ok" else 503)

    @app.get("/v1/models")
    async def models() -> dict:
        card = {"id": engine.name, "object": "model", "created": 0, "owned_by": "parrot"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await read_body(request)
        except _TooLarge:
            return refuse(f"the request body is larger than {max_request_bytes:,} bytes", status=413)
        except TimeoutError:
            return refuse(f"the request body did not arrive within {body_timeout:g} s (--body-timeout)", status=408)
        if not slots.try_take():
            return refuse(
                f"the server is busy: {slots.limit} chat requests are queued or running (--max-concurrency); "
                "retry later",
                status=503,
            )
        handed_over = False
        try:
            try:
                chat, prepared = await run_in_threadpool(validate, body)
            except BadInputError as err:
                return refuse(str(err))
            if not chat.stream:
                return await answer_whole(request, chat, prepared)
            cancel = threading.Event()
            events = _event_stream(engine, chat, prepared, cancel)
            response = GenerationStream(events, cancel, on_close=slots.give_back, headers=SSE_HEADERS)
            handed_over = True  # the stream gives the slot back when it ends
            return response
        finally:
            if not handed_over:
                slots.give_back()

    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="OpenAI-compatible chat-completions server for a LLaVA/Parrot checkpoint")
    parser.add_argument("--model-path", required=True, help="checkpoint directory (config.json + weights)")
    parser.add_argument("--model-base", default=None, help="base model for LoRA or stage-1 projector checkpoints")
    parser.add_argument("--model-name", default=None, help="name reported by /v1/models (default: folder name)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 exposes the API to the network")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--conv-mode", default=None, help="override the chat template saved in the checkpoint")
    parser.add_argument("--max-request-mb", type=float, default=DEFAULT_MAX_REQUEST_BYTES / 2**20)
    parser.add_argument("--max-image-pixels", type=int, default=None, help=f"default: Pillow's limit, {pixel_limit():,}")
    parser.add_argument("--max-concurrency", type=_positive(int), default=16,
                        help="chat requests queued or running at once; more get HTTP 503 (idle connections do not count)")
    parser.add_argument("--header-timeout", type=_positive(float), default=DEFAULT_HEADER_TIMEOUT_S,
                        help="seconds a connection may take to send a complete request head; then it is closed")
    parser.add_argument("--body-timeout", type=_positive(float), default=DEFAULT_BODY_TIMEOUT_S,
                        help="seconds a request body may take to arrive; slower ones get HTTP 408")
    parser.add_argument("--stall-seconds", type=_positive(float), default=DEFAULT_STALL_S,
                        help="/health answers 503 when the running generation has not advanced for this long")
    parser.add_argument("--shutdown-timeout", type=_positive(int), default=DEFAULT_SHUTDOWN_TIMEOUT_S,
                        help="seconds shutdown waits for open requests before cancelling them")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="default when a request sets no max_tokens")
    parser.add_argument("--temperature", type=float, default=0.2, help="default when a request sets none")
    return parser.parse_args(argv)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    engine = ChatEngine.from_pretrained(
        args.model_path, args.model_base, device, args.conv_mode, args.model_name, args.max_image_pixels
    )
    defaults = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    app = create_app(
        engine, int(args.max_request_mb * 2**20), defaults, args.max_concurrency, args.body_timeout, args.stall_seconds
    )
    from llava.serve.http_server import build_server

    build_server(app, args.host, args.port, args.header_timeout, args.shutdown_timeout).run()


if __name__ == "__main__":
    main()
