"""`GenerationStream`: the server-sent-event response of one streamed chat completion.

Starlette's StreamingResponse, when the client disconnects, cancels the task that iterates the body
and leaves the body's generator to the garbage collector, so whatever the generator holds is held
until a collection runs. Here the response owns the generation's lifetime instead:

- the moment the client disconnects, the generation's `cancel` event is set, so the engine takes
  the request out of the batch at its next decoding step;
- however the response ends (finished, client gone, server shutting down), the body's async
  generator is closed, shielded from cancellation, and then `on_close` runs.

The body is an async generator fed by the engine's worker thread through `deltas_async`, so a
stream occupies no thread while it waits for tokens.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class GenerationStream(StreamingResponse):
    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        cancel: threading.Event,
        on_close: Callable[[], None],
        headers: dict[str, str] | None = None,
    ):
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self._events, self._cancel, self._on_close = events, cancel, on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_disconnect, receive, group.cancel_scope)
                try:
                    await self.stream_response(send)
                except OSError:  # servers on ASGI spec 2.4 report a gone client by failing `send`
                    self._cancel.set()
                group.cancel_scope.cancel()
        finally:
            self._cancel.set()
            with anyio.CancelScope(shield=True):
                await self._events.aclose()
            self._on_close()

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        await self.listen_for_disconnect(receive)
        self._cancel.set()
        scope.cancel()
