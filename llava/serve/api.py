"""OpenAI-compatible HTTP API: `python -m llava.serve.api --model-path CKPT --port 8000`.

Endpoints: `POST /v1/chat/completions` (images as base64 `image_url` data URLs; `"stream": true`
answers with server-sent events `data: {chunk}` and a final `data: [DONE]`), `GET /v1/models`,
`GET /health`. Binds 127.0.0.1 unless `--host` says otherwise. Bodies over `--max-request-mb` get
413; malformed JSON and bad input get 400 with the reason in OpenAI's error envelope; the server
keeps serving after either.

FastAPI + uvicorn rather than `http.server`: both come with gradio (the `serve` extra), and they
give HTTP/1.1 keep-alive, chunked SSE streaming, and a concurrency limit (`--max-concurrency`,
503 beyond it) without hand-written protocol code. Generation itself runs one request at a time
(`ChatEngine` holds a lock); the others wait in the thread pool.

No `from __future__ import annotations` here: FastAPI reads the handlers' annotations at runtime.
"""

import argparse
import ipaddress
import json
import logging
from collections.abc import Iterator

from llava.optional import require_gradio
from llava.serve.engine import ChatEngine, GenerationResult, PreparedChat, SamplingParams
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


class _TooLarge(Exception):
    pass


def _sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def _event_stream(engine: ChatEngine, request: ChatRequest, prepared: PreparedChat) -> Iterator[bytes]:
    completion_id, result = new_completion_id(), GenerationResult()
    yield _sse(chunk_body(completion_id, engine.name, {"role": "assistant", "content": ""}))
    try:
        for delta in engine.stream(prepared, request.params, result):
            yield _sse(chunk_body(completion_id, engine.name, {"content": delta}))
    except Exception as err:  # the status line is already sent: report in-band, keep serving
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


def create_app(
    engine: ChatEngine,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    defaults: SamplingParams | None = None,
):
    """The FastAPI application serving `engine` (see the module docstring for the endpoints)."""
    require_gradio()  # fastapi and uvicorn come with gradio (the serve extra): one message if missing
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    defaults = (defaults or SamplingParams()).checked()
    app = FastAPI(title="Parrot OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)

    def bad_request(message: str, status: int = 400) -> JSONResponse:
        logger.info("rejected request (%d): %s", status, message)
        return JSONResponse(error_body(message), status_code=status)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_request_bytes:
            raise _TooLarge
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_request_bytes:
                raise _TooLarge
        return bytes(body)

    def load_image(url: str):
        if not engine.accepts_images:
            raise BadInputError(f"{engine.name} is a text-only model; send the message without an image")
        return decode_data_url(url, max_pixels=engine.max_image_pixels)

    def validate(body: bytes) -> tuple[ChatRequest, PreparedChat]:
        try:
            payload = json.loads(body)
        except ValueError as err:
            raise BadInputError(f"the request body is not valid JSON ({err})") from err
        request = parse_chat_request(payload, load_image, defaults)
        prepared = engine.prepare(request.message, request.history, request.image, request.image_turn, request.system)
        return request, prepared

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": engine.name}

    @app.get("/v1/models")
    def models() -> dict:
        card = {"id": engine.name, "object": "model", "created": 0, "owned_by": "parrot"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await read_body(request)
        except _TooLarge:
            return bad_request(f"the request body is larger than {max_request_bytes:,} bytes", status=413)
        try:
            chat, prepared = await run_in_threadpool(validate, body)
        except BadInputError as err:
            return bad_request(str(err))
        if chat.stream:
            return StreamingResponse(
                _event_stream(engine, chat, prepared),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            result = await run_in_threadpool(engine.generate, prepared, chat.params)
        except BadInputError as err:
            return bad_request(str(err))
        except Exception as err:
            logger.exception("generation failed")
            return JSONResponse(error_body(f"generation failed: {err}", kind="server_error"), status_code=500)
        return completion_body(new_completion_id(), engine.name, prepared, result)

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
    parser.add_argument("--max-concurrency", type=int, default=16, help="open connections beyond this get HTTP 503")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="default when a request sets no max_tokens")
    parser.add_argument("--temperature", type=float, default=0.2, help="default when a request sets none")
    return parser.parse_args(argv)


def server_config(app, host: str = "127.0.0.1", port: int = 8000, max_concurrency: int = 16):
    """The uvicorn configuration `main` serves with (tests start the same one in a thread)."""
    import uvicorn

    if not _is_loopback(host):
        logger.warning("binding %s: the API is reachable from the network and has no authentication", host)
    return uvicorn.Config(app, host=host, port=port, limit_concurrency=max_concurrency, log_level="info")


def main(argv: list[str] | None = None) -> None:
    import torch
    import uvicorn

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    engine = ChatEngine.from_pretrained(
        args.model_path, args.model_base, device, args.conv_mode, args.model_name, args.max_image_pixels
    )
    defaults = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    app = create_app(engine, int(args.max_request_mb * 2**20), defaults)
    uvicorn.Server(server_config(app, args.host, args.port, args.max_concurrency)).run()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


if __name__ == "__main__":
    main()
