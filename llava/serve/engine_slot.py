"""`EngineSlot`: the one-generation-at-a-time slot of a `ChatEngine`, with cancellation and health.

The slot is taken by the request's thread and handed to the generation's worker thread, which frees
it the moment generation ends; nothing depends on a consumer closing its stream or on the garbage
collector. Waiting for the slot polls its request's `cancel` event, so a request whose client left,
or a server that is shutting down, never waits behind a long generation.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria

_WAIT_POLL_S = 0.05  # how often a request waiting for the slot checks whether it was cancelled


class GenerationCancelled(RuntimeError):
    """A generation stopped (or never started): its request was cancelled or the engine shut down."""


@dataclass(frozen=True)
class EngineStatus:
    """Whether a generation holds the engine, how many requests wait for it, and how long ago the
    running generation last finished a decoding step (None when idle)."""

    busy: bool
    waiting: int
    seconds_since_progress: float | None
    shutting_down: bool


class StopWhenCancelled(StoppingCriteria):
    """Runs after every decoding step: records the progress, and stops generation once the request
    is cancelled or the engine shuts down (`fired` then says so)."""

    def __init__(self, cancel: threading.Event, closing: threading.Event, on_step):
        self.cancel, self.closing, self.on_step = cancel, closing, on_step
        self.fired = False

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        self.on_step()
        self.fired = self.cancel.is_set() or self.closing.is_set()
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)


class EngineSlot:
    def __init__(self):
        self._lock = threading.Lock()  # threading.Lock may be released by another thread than its taker
        self._closing = threading.Event()
        self._waiting = 0
        self._last_progress: float | None = None  # monotonic time of the last decoding step; None when free

    def acquire(self, cancel: threading.Event) -> None:
        """Wait for the slot; GenerationCancelled if `cancel` is set or `shutdown` is called meanwhile."""
        self.raise_if_cancelled(cancel)
        self._waiting += 1
        try:
            while not self._lock.acquire(timeout=_WAIT_POLL_S):
                self.raise_if_cancelled(cancel)
        finally:
            self._waiting -= 1
        self._last_progress = time.monotonic()

    def release(self) -> None:
        self._last_progress = None
        self._lock.release()

    def record_progress(self) -> None:
        self._last_progress = time.monotonic()

    def stopping_criterion(self, cancel: threading.Event) -> StopWhenCancelled:
        """The criterion a generation holding the slot runs with: it stops on `cancel` or shutdown."""
        return StopWhenCancelled(cancel, self._closing, self.record_progress)

    def raise_if_cancelled(self, cancel: threading.Event) -> None:
        if self._closing.is_set():
            raise GenerationCancelled("the server is shutting down")
        if cancel.is_set():
            raise GenerationCancelled("the request was cancelled")

    def shutdown(self) -> None:
        """Stop the running generation at its next decoding step; refuse waiting and new requests."""
        self._closing.set()

    def status(self) -> EngineStatus:
        last = self._last_progress
        return EngineStatus(
            busy=last is not None,
            waiting=self._waiting,
            seconds_since_progress=None if last is None else time.monotonic() - last,
            shutting_down=self._closing.is_set(),
        )
