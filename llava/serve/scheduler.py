"""`BatchScheduler`: continuous batching on one worker thread.

Requests wait in a queue; before every decoding step the worker admits as many as the batch has
room for (`max_batch_size`), so a request that arrives while others are generating joins at the
next step instead of waiting for them to finish. Rows that finished, and rows whose request was
cancelled (its client left), leave the batch before the next step, which is how a cancelled
request stops within one step; a place freed by a step is offered to a waiting request before the
next step, so the next request starts in the step the previous one finished.

The worker thread exists only while there is work: it starts with the first request and ends
when the queue and the batch are empty, so nothing outlives the requests, and no consumer that
abandons its stream can hold the engine. `status()` says whether decoding still advances (for
`/health`), `shutdown()` fails every running and waiting request at the next step and refuses new
ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from llava.serve.decode_batch import DecodeBatch
from llava.serve.request import GenerationCancelled, GenerationRequest

logger = logging.getLogger(__name__)

GENERATION_THREAD_NAME = "chat-engine-generate"


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot of the engine. `seconds_since_progress` is the time since the batch last finished a
    prefill or decoding step (None when idle); the totals count since the engine was made."""

    busy: bool
    running: int
    waiting: int
    seconds_since_progress: float | None
    shutting_down: bool
    tokens_generated: int
    steps: int


class BatchScheduler:
    def __init__(self, batch: DecodeBatch, max_batch_size: int):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.batch, self.max_batch_size = batch, max_batch_size
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._waiting: deque[GenerationRequest] = deque()
        self._worker: threading.Thread | None = None
        self._last_progress: float | None = None  # monotonic; None while idle
        self._joining = 0  # requests being prefilled: in the batch from now on, though not yet decoding
        self._tokens = self._steps = 0

    def submit(self, request: GenerationRequest) -> None:
        """Queue `request`; GenerationCancelled if it is already cancelled or the engine shuts down."""
        self.submit_all([request])

    def submit_all(self, requests: list[GenerationRequest]) -> None:
        """Queue `requests` at once, so that the worker can prefill them together; GenerationCancelled
        (and none queued) if one is already cancelled or the engine shuts down."""
        with self._lock:
            if self.closing.is_set():
                raise GenerationCancelled("the server is shutting down")
            if any(request.cancel.is_set() for request in requests):
                raise GenerationCancelled("the request was cancelled")
            self._waiting.extend(requests)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name=GENERATION_THREAD_NAME, daemon=True)
                self._worker.start()

    def withdraw(self, request: GenerationRequest) -> None:
        """Take `request` out of the queue if it is still waiting (its consumer gave up)."""
        with self._lock:
            if request in self._waiting:
                self._waiting.remove(request)

    def shutdown(self) -> None:
        self.closing.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until the worker thread has ended (nothing waiting or running); False on timeout.

        A process must not exit while the worker is inside a torch call: the interpreter would stop
        the daemon thread mid-operation and the C++ runtime aborts the process ("terminate called
        without an active exception", exit 134) even though every answer was delivered."""
        with self._lock:
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
            return not worker.is_alive()
        return True

    def status(self) -> EngineStatus:
        last = self._last_progress
        return EngineStatus(
            busy=last is not None,
            running=len(self.batch) + self._joining,
            waiting=len(self._waiting),
            seconds_since_progress=None if last is None else time.monotonic() - last,
            shutting_down=self.closing.is_set(),
            tokens_generated=self._tokens,
            steps=self._steps,
        )

    def _take_joining(self) -> list[GenerationRequest] | None:
        """Requests to admit now; None when there is nothing left to do (the worker then ends)."""
        with self._lock:
            if self.closing.is_set():
                for request in self._waiting:
                    request.fail(GenerationCancelled("the server is shutting down"))
                self._waiting.clear()
            for request in [r for r in self._waiting if r.cancel.is_set()]:
                self._waiting.remove(request)
                request.fail(GenerationCancelled("the request was cancelled"))
            room = self.batch.room(self.max_batch_size)
            joining = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
            if not joining and not len(self.batch):
                self._worker, self._last_progress = None, None
                return None
            if self._last_progress is None:
                self._last_progress = time.monotonic()
            return joining

    def _progress(self, tokens: int) -> None:
        self._tokens += tokens
        self._steps += 1
        self._last_progress = time.monotonic()

    def _run(self) -> None:
        while True:
            # Rows that finished in the last step leave first, so their places go to waiting
            # requests in this same step, not one step later.
            self.batch.retire(self.closing.is_set())
            joining = self._take_joining()
            if joining is None:
                return
            if joining:
                self._admit(joining)
                self.batch.retire(self.closing.is_set())  # rows done at their first token, or cancelled
            if len(self.batch):
                try:
                    self.batch.step()
                    self._progress(len(self.batch))
                except Exception as err:  # every running request gets the error; the engine goes on
                    logger.exception("decoding failed for a batch of %d", len(self.batch))
                    self.batch.fail(err)

    def _admit(self, joining: list[GenerationRequest]) -> None:
        self._joining = len(joining)
        for request in joining:
            request.start()
        try:
            self.batch.admit(joining)
            self._progress(len(joining))
        except Exception as err:  # those requests get the error; the running batch goes on
            logger.exception("prefill failed for %d new request(s)", len(joining))
            for request in joining:
                if not request.finished:
                    request.fail(err)
        finally:
            self._joining = 0
