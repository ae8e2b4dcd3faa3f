"""One chat request as the batch scheduler sees it: its settings, its answer so far, its result.

`SamplingParams` and `PreparedChat` are what a caller hands to `ChatEngine.stream`;
`GenerationRequest` is the row that request occupies in the running batch. Everything a row needs
to decide alone lives here: its own random generator (so a seed gives the same tokens whoever it is
batched with), its own stop strings and token budget, and its own text. The worker thread writes
to a row; the request's own thread reads what the row posts to its queue.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from llava.serve.answer_text import AnswerText
from llava.serve.inputs import BadInputError

MAX_STOP_STRINGS = 4  # as OpenAI's API
_POLL_S = 0.05  # how often a request waiting for tokens checks whether it was cancelled


class GenerationCancelled(RuntimeError):
    """A generation stopped (or never started): its request was cancelled or the engine shut down."""


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one request; `temperature` 0 means greedy decoding.

    `stop`: strings that end the answer (not included in it). `seed`: the request's own random
    stream (None: drawn from torch's global generator when the request is made). `ignore_eos`:
    generate `max_new_tokens` tokens, past end-of-sequence tokens and the template's stop string
    (for benchmarks; `stop` strings still apply).
    """

    max_new_tokens: int = 256
    temperature: float = 0.2
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False

    def checked(self) -> SamplingParams:
        """Self, or BadInputError naming the first setting out of range."""
        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            raise BadInputError(f"max_new_tokens must be a whole number >= 1, got {self.max_new_tokens!r}")
        if not 0.0 <= float(self.temperature) <= 2.0:
            raise BadInputError(f"temperature must be between 0 and 2, got {self.temperature!r}")
        if not 0.0 < float(self.top_p) <= 1.0:
            raise BadInputError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if len(self.stop) > MAX_STOP_STRINGS or not all(isinstance(s, str) and s for s in self.stop):
            raise BadInputError(f"stop must be at most {MAX_STOP_STRINGS} non-empty strings, got {self.stop!r}")
        if self.seed is not None and not -(2**63) <= self.seed < 2**64:
            raise BadInputError(f"seed must be a 64-bit integer, got {self.seed!r}")
        return self


@dataclass(frozen=True)
class PreparedChat:
    """A checked prompt: the template-rendered text, its image, and its size in LLM tokens."""

    prompt: str
    image: Image.Image | None
    prompt_tokens: int
    room_for_answer: int


@dataclass
class GenerationResult:
    """Filled in while a stream runs; complete once the stream is exhausted. `time_to_first_token`
    counts from the moment the request was handed to the engine (queueing included)."""

    text: str = ""
    completion_tokens: int = 0
    finish_reason: str | None = None
    routing: list[float] | None = field(default=None)
    time_to_first_token: float | None = None


_DONE = object()  # posted after the last delta of a row that finished normally


class GenerationRequest:
    """One row of the running batch: what it generates from, when it stops, and where its text goes.

    `stop_strings` end the answer as text; `eos_ids` end it as tokens (both ignored for the template
    ones when `params.ignore_eos`). `max_new_tokens` is already clipped to the room in the context.
    """

    def __init__(
        self,
        prepared: PreparedChat,
        params: SamplingParams,
        result: GenerationResult,
        cancel: threading.Event,
        tokenizer,
        template_stop: str,
        eos_ids: Sequence[int],
    ):
        self.prepared, self.params, self.result, self.cancel = prepared, params, result, cancel
        self.max_new_tokens = min(params.max_new_tokens, prepared.room_for_answer)
        stops = list(params.stop) + ([] if params.ignore_eos or not template_stop else [template_stop])
        self.eos_ids = frozenset() if params.ignore_eos else frozenset(eos_ids)
        self.text = AnswerText(tokenizer, stops)
        # Drawn in the caller's thread, so torch.manual_seed there makes unseeded requests repeatable.
        self.seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        self.generator: torch.Generator | None = None  # made on the logits' device at the first sample
        self.submitted = time.monotonic()
        self.finished = False
        self._events: queue.SimpleQueue = queue.SimpleQueue()

    # ---- written by the worker thread --------------------------------------------------------
    def generator_on(self, device: torch.device) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.seed)
        return self.generator

    def accept(self, token_id: int) -> None:
        """Record the next token; post the visible text it adds; finish on a stop or the budget."""
        if self.result.time_to_first_token is None:
            self.result.time_to_first_token = time.monotonic() - self.submitted
        self.result.completion_tokens += 1
        stopped = token_id in self.eos_ids or self.text.add(token_id)
        delta = self.text.visible_delta()
        if delta:
            self.result.text = self.text.shown
            self._events.put(delta)
        if stopped:
            self._finish("stop")
        elif self.result.completion_tokens >= self.max_new_tokens:
            self._finish("length")

    def fail(self, error: BaseException) -> None:
        """End the row with `error` (raised in the request's thread)."""
        self.finished = True
        self._events.put(error)

    def _finish(self, reason: str) -> None:
        final = self.text.final()
        shown = self.text.shown
        if len(final) > len(shown) and final.startswith(shown):
            self._events.put(final[len(shown) :])
        self.result.text = final if final.startswith(shown) else shown
        self.result.finish_reason = reason
        self.finished = True
        self._events.put(_DONE)

    # ---- read by the request's thread --------------------------------------------------------
    def deltas(self, closing: threading.Event) -> Iterator[str]:
        """The answer's text deltas as the worker posts them; GenerationCancelled once `cancel` or
        `closing` is set, without waiting for the worker to notice."""
        while True:
            if self.cancel.is_set() or closing.is_set():
                reason = "the server is shutting down" if closing.is_set() else "the request was cancelled"
                raise GenerationCancelled(reason)
            try:
                event = self._events.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if event is _DONE:
                return
            if isinstance(event, BaseException):
                raise event
            yield event
