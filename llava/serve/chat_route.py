"""`POST /v1/chat/completions`: read and check the request, generate, answer whole or as SSE.

Bodies over the size limit get 413, bodies slower than the body timeout 408, malformed JSON and bad
input 400 with the reason in OpenAI's error envelope. At most `max_concurrency` chat requests are
being checked, queued or generated at once (idle connections do not count); the others get 503 at
once. A client that goes away is noticed while its answer is generated: its request leaves the
batch at the next decoding step, and its place counts as free as soon as the response ends,
however it ends.

No `from __future__ import annotations` here: FastAPI reads the handler's annotations at runtime.
"""

import asyncio
import contextlib
import json
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from llava.serve.engine import ChatEngine, GenerationCancelled, GenerationResult, PreparedChat, SamplingParams
from llava.serve.inputs import BadInputError, decode_data_url
from llava.serve.metrics import ServeMetrics
from llava.serve.openai_protocol import (
    ChatRequest,
    chunk_body,
    completion_body,
    error_body,
    new_completion_id,
    parse_chat_request,
    usage,
)
from llava.serve.streaming import GenerationStream

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class ChatLimits:
    max_request_bytes: int
    defaults: SamplingParams
    max_concurrency: int
    body_timeout: float


class _TooLarge(Exception):
    pass


def refuse(message: str, status: int = 400) -> JSONResponse:
    logger.info("refused request (%d): %s", status, message)
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(error_body(message, kind=kind), status_code=status)


def _sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


class LoopWaker:
    """Sets asyncio events of one loop from the engine's worker thread. The rows of a decoding step
    all post at once: their events are set by one callback, so the loop is woken once per step,
    not once per row."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._lock = threading.Lock()
        self._pending: list[asyncio.Event] = []

    def notifier(self, event: asyncio.Event) -> Callable[[], None]:
        def notify() -> None:  # runs in the worker thread
            with self._lock:
                self._pending.append(event)
                if len(self._pending) > 1:
                    return  # a wake-up is already on its way
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                self.loop.call_soon_threadsafe(self._set_pending)

        return notify

    def _set_pending(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
        for event in events:
            event.set()


_wakers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWaker]" = weakref.WeakKeyDictionary()


async def _answer(
    engine: ChatEngine, prepared: PreparedChat, params: SamplingParams, result: GenerationResult, cancel: threading.Event
) -> AsyncIterator[str]:
    """The answer's text deltas, awaited on this event loop (no thread waits for them)."""
    loop, wake = asyncio.get_running_loop(), asyncio.Event()
    waker = _wakers.get(loop) or _wakers.setdefault(loop, LoopWaker(loop))
    request = engine.submit(prepared, params, result, cancel, waker.notifier(wake))
    try:
        async for delta in request.deltas_async(engine.closing, wake):
            yield delta
    finally:
        engine.release(request)


async def _event_stream(
    engine: ChatEngine, request: ChatRequest, prepared: PreparedChat, cancel: threading.Event, metrics: ServeMetrics
) -> AsyncIterator[bytes]:
    completion_id, result = new_completion_id(), GenerationResult()
    yield _sse(chunk_body(completion_id, engine.name, {"role": "assistant", "content": ""}))
    try:
        async for delta in _answer(engine, prepared, request.params, result, cancel):
            yield _sse(chunk_body(completion_id, engine.name, {"content": delta}))
    except Exception as err:  # the status line is already sent: report in-band, keep serving
        if not isinstance(err, GenerationCancelled):
            logger.exception("generation failed mid-stream")
        yield _sse(error_body(f"generation failed: {err}", kind="server_error"))
        yield _sse("[DONE]")
        return
    finally:
        metrics.observe_first_token(result.time_to_first_token)
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


def add_chat_route(
    app: FastAPI, current_engine: Callable[[], ChatEngine | None], limits: ChatLimits, metrics: ServeMetrics
) -> None:
    """Register `POST /v1/chat/completions` on `app`; `current_engine()` is None while the model loads."""
    slots = _GenerationSlots(limits.max_concurrency)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_request_bytes:
            raise _TooLarge
        body = bytearray()
        with anyio.fail_after(limits.body_timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.max_request_bytes:
                    raise _TooLarge
        return bytes(body)

    def validate(engine: ChatEngine, body: bytes) -> tuple[ChatRequest, PreparedChat]:
        try:
            payload = json.loads(body)
        except ValueError as err:
            raise BadInputError(f"the request body is not valid JSON ({err})") from err
        except RecursionError:
            raise BadInputError("the request body nests JSON arrays or objects too deeply to parse") from None

        def load_image(url: str):
            if not engine.accepts_images:
                raise BadInputError(f"{engine.name} is a text-only model; send the message without an image")
            return engine.check_image(decode_data_url(url, max_pixels=engine.max_image_pixels), "image_url")

        request = parse_chat_request(payload, load_image, limits.defaults)
        prepared = engine.prepare(request.message, request.history, request.image, request.image_turn, request.system)
        return request, prepared

    async def answer_whole(request: Request, engine: ChatEngine, chat: ChatRequest, prepared: PreparedChat):
        cancel, result = threading.Event(), GenerationResult()
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_disconnect, request.receive, cancel)
            try:
                async for _ in _answer(engine, prepared, chat.params, result, cancel):
                    pass
            except BadInputError as err:
                return refuse(str(err))
            except GenerationCancelled as err:
                return refuse(f"generation cancelled: {err}", status=503)
            except Exception as err:
                logger.exception("generation failed")
                return refuse(f"generation failed: {err}", status=500)
            finally:
                group.cancel_scope.cancel()
        metrics.observe_first_token(result.time_to_first_token)
        return completion_body(new_completion_id(), engine.name, prepared, result)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await read_body(request)
        except _TooLarge:
            return refuse(f"the request body is larger than {limits.max_request_bytes:,} bytes", status=413)
        except TimeoutError:
            return refuse(f"the request body did not arrive within {limits.body_timeout:g} s (--body-timeout)", status=408)
        engine = current_engine()
        if engine is None:
            return refuse("the model is still loading; retry when /health reports status ok", status=503)
        if not slots.try_take():
            return refuse(
                f"the server is busy: {slots.limit} chat requests are queued or running (--max-concurrency); "
                "retry later",
                status=503,
            )
        handed_over = False
        try:
            try:
                chat, prepared = await run_in_threadpool(validate, engine, body)
            except BadInputError as err:
                return refuse(str(err))
            if not chat.stream:
                return await answer_whole(request, engine, chat, prepared)
            cancel = threading.Event()
            events = _event_stream(engine, chat, prepared, cancel, metrics)
            response = GenerationStream(events, cancel, on_close=slots.give_back, headers=SSE_HEADERS)
            handed_over = True  # the stream gives the slot back when it ends
            return response
        finally:
            if not handed_over:
                slots.give_back()
