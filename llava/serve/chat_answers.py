"""The answers of one chat request: its `n` samples, generated in one batch, whole or as SSE.

Each sample is a `GenerationRequest` of its own (its seed derived from the request's, see
`openai_fields.sample_params`); all share the request's `cancel` event. Their text deltas are
awaited on the event loop (no thread waits for them), merged into one queue tagged with the
choice index, and sent as chunks of that choice; with `logprobs` each chunk carries the entries of
the tokens generated since that choice's previous chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable

from llava.serve.engine import ChatEngine, GenerationCancelled, GenerationRequest, PreparedChat
from llava.serve.metrics import ServeMetrics
from llava.serve.openai_fields import sample_params
from llava.serve.openai_protocol import (
    ChatRequest,
    chunk_body,
    completion_body,
    error_body,
    new_completion_id,
    usage,
)

logger = logging.getLogger(__name__)


def sse(payload: dict | str) -> bytes:
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


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWaker] = weakref.WeakKeyDictionary()
_END = object()


async def _samples(
    engine: ChatEngine, chat: ChatRequest, prepared: PreparedChat, cancel: threading.Event
) -> AsyncIterator[tuple[int, str | None, GenerationRequest]]:
    """(choice index, text delta, its request) as the samples generate; delta None when one ends.
    A sample's error (GenerationCancelled included) is raised here."""
    loop = asyncio.get_running_loop()
    waker = _wakers.get(loop) or _wakers.setdefault(loop, LoopWaker(loop))
    wakes = [asyncio.Event() for _ in range(chat.n)]
    requests = engine.submit_samples(prepared, sample_params(chat.params, chat.n), cancel, [waker.notifier(w) for w in wakes])
    merged: asyncio.Queue = asyncio.Queue()

    async def pump(index: int) -> None:
        try:
            async for delta in requests[index].deltas_async(engine.closing, wakes[index]):
                merged.put_nowait((index, delta))
            merged.put_nowait((index, None))
        except BaseException as err:  # handed to the reader, which raises it
            merged.put_nowait((index, err))

    tasks = [asyncio.ensure_future(pump(i)) for i in range(chat.n)]
    try:
        running = chat.n
        while running:
            index, item = await merged.get()
            if isinstance(item, BaseException):
                raise item
            running -= item is None
            yield index, item, requests[index]
    finally:
        for task in tasks:
            task.cancel()
        for request in requests:
            engine.release(request)


async def whole_answer(engine: ChatEngine, chat: ChatRequest, prepared: PreparedChat, cancel: threading.Event, metrics: ServeMetrics):
    """The `chat.completion` body of every sample (raises what generation raised)."""
    results = {}
    async for index, _, request in _samples(engine, chat, prepared, cancel):
        results[index] = request.result
    ordered = [results[i] for i in range(chat.n)]
    for result in ordered:
        metrics.observe_first_token(result.time_to_first_token)
    return completion_body(new_completion_id(), engine.name, prepared, ordered, logprobs=chat.params.logprobs)


async def event_stream(
    engine: ChatEngine, chat: ChatRequest, prepared: PreparedChat, cancel: threading.Event, metrics: ServeMetrics
) -> AsyncIterator[bytes]:
    completion_id, name, sent = new_completion_id(), engine.name, [0] * chat.n
    results = {}

    def new_logprobs(index: int, request: GenerationRequest) -> list[dict] | None:
        if not chat.params.logprobs:
            return None
        entries = list(request.result.logprobs or [])
        fresh, sent[index] = entries[sent[index] :], len(entries)
        return fresh

    for index in range(chat.n):
        yield sse(chunk_body(completion_id, name, {"role": "assistant", "content": ""}, index=index))
    try:
        async for index, delta, request in _samples(engine, chat, prepared, cancel):
            results[index] = request.result
            if delta is None:
                finish = request.result.finish_reason
                yield sse(chunk_body(completion_id, name, {}, finish, index=index, logprobs=new_logprobs(index, request)))
                metrics.observe_first_token(request.result.time_to_first_token)
            else:
                yield sse(chunk_body(completion_id, name, {"content": delta}, index=index, logprobs=new_logprobs(index, request)))
    except Exception as err:  # the status line is already sent: report in-band, keep serving
        if not isinstance(err, GenerationCancelled):
            logger.exception("generation failed mid-stream")
        yield sse(error_body(f"generation failed: {err}", kind="server_error"))
        yield sse("[DONE]")
        return
    if chat.include_usage:
        tail = chunk_body(completion_id, name, {})
        tail["choices"], tail["usage"] = [], usage(prepared, [results[i] for i in range(chat.n)])
        yield sse(tail)
    yield sse("[DONE]")
