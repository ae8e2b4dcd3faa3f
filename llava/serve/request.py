"""One chat request as the batch scheduler sees it: its settings, its answer so far, its result.

`SamplingParams` and `PreparedChat` are what a caller hands to `ChatEngine.stream`;
`GenerationRequest` is the row that request occupies in the running batch. Everything a row needs
to decide alone lives here: its own random generator (so a seed gives the same tokens whoever it is
batched with), its own stop strings and token budget, and its own text. The worker thread writes
to a row; the request's own thread reads what the row posts to its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from PIL import Image

from llava.generation_defaults import GENERATION_DEFAULTS
from llava.serve.answer_text import AnswerText
from llava.serve.inputs import BadInputError

MAX_STOP_STRINGS = 4  # as OpenAI's API
MAX_TOP_LOGPROBS = 20  # as OpenAI's API
_POLL_S = 0.05  # how often a request waiting for tokens checks whether it was cancelled


class GenerationCancelled(RuntimeError):
    """A generation stopped (or never started): its request was cancelled or the engine shut down."""


# Below this, logits divided by the temperature overflow to inf and sampling fails on NaN
# probabilities; such a temperature decodes greedily, the limit it tends to.
MIN_SAMPLING_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one request; `temperature` 0 means greedy decoding.

    `stop`: strings that end the answer (not included in it). `seed`: the request's own random
    stream (None: drawn from torch's global generator when the request is made). `ignore_eos`:
    generate `max_new_tokens` tokens, past end-of-sequence tokens and the template's stop string
    (for benchmarks; `stop` strings still apply).
    """

    max_new_tokens: int = GENERATION_DEFAULTS.max_new_tokens
    temperature: float = GENERATION_DEFAULTS.temperature
    top_p: float = GENERATION_DEFAULTS.top_p
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def penalised(self) -> bool:
        """Whether this request needs the batch's token counts (a penalty other than off)."""
        return bool(self.frequency_penalty or self.presence_penalty or self.repetition_penalty != 1.0)

    def checked(self) -> SamplingParams:
        """Self (a temperature below MIN_SAMPLING_TEMPERATURE read as 0: greedy), or BadInputError
        naming the first setting out of range."""
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
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2.0 <= float(getattr(self, name)) <= 2.0:
                raise BadInputError(f"{name} must be between -2 and 2, got {getattr(self, name)!r}")
        if not 0.0 < float(self.repetition_penalty) <= 10.0:
            raise BadInputError(f"repetition_penalty must be in (0, 10], got {self.repetition_penalty!r}")
        if any(not -100.0 <= float(bias) <= 100.0 for _, bias in self.logit_bias):
            raise BadInputError("logit_bias values must be between -100 and 100")
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS or (self.top_logprobs and not self.logprobs):
            raise BadInputError(f"top_logprobs must be 0-{MAX_TOP_LOGPROBS} and needs logprobs: true, got {self.top_logprobs!r}")
        if 0.0 < float(self.temperature) < MIN_SAMPLING_TEMPERATURE:
            return replace(self, temperature=0.0)
        return self


@dataclass(frozen=True)
class PreparedChat:
    """A checked prompt: the template-rendered text, its image, and its size in LLM tokens; also its
    token ids (with the image sentinel) and the image's pixel values (1, 3, H, W), computed by the
    request's own thread so that the decoding thread never waits for tokenizers or image processors."""

    prompt: str
    image: Image.Image | None
    prompt_tokens: int
    room_for_answer: int
    input_ids: tuple[int, ...] = ()
    pixel_values: torch.Tensor | None = None


@dataclass
class GenerationResult:
    """Filled in while a stream runs; complete once the stream is exhausted. `time_to_first_token`
    counts from the moment the request was handed to the engine (queueing included)."""

    text: str = ""
    completion_tokens: int = 0
    finish_reason: str | None = None
    routing: list[float] | None = field(default=None)
    time_to_first_token: float | None = None
    logprobs: list[dict] | None = None  # OpenAI's logprobs.content entries, one per token, when asked


class RequestStatus(enum.Enum):
    """Where a request is in its life: waiting for a place in the batch, decoding, or finished (and
    why). A request moves forward only: WAITING -> RUNNING -> one FINISHED_* state (or straight from
    WAITING to FINISHED_ABORTED / FINISHED_ERROR when it never got a place)."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED_STOPPED = "stop"  # an end-of-sequence token or a stop string
    FINISHED_LENGTH = "length"  # max_new_tokens or the room left in the context
    FINISHED_ABORTED = "aborted"  # cancelled by its client, or the engine shut down
    FINISHED_ERROR = "error"  # prefill or decoding failed

    @property
    def finished(self) -> bool:
        return self not in (RequestStatus.WAITING, RequestStatus.RUNNING)

    @property
    def finish_reason(self) -> str | None:
        """The OpenAI `finish_reason` of a request that ended normally ("stop", "length"), else None."""
        return self.value if self in (RequestStatus.FINISHED_STOPPED, RequestStatus.FINISHED_LENGTH) else None


_DONE = object()  # posted after the last delta of a row that finished normally


class GenerationRequest:
    """One row of the running batch: what it generates from, when it stops, and where its text goes.

    The template's stop string and the stop strings of `params` end the answer as text, `eos_ids`
    as tokens (the template's and the eos ids are ignored when `params.ignore_eos`); `max_new_tokens`
    is clipped to the room in the context. The worker posts text deltas to the request's queue and
    then calls `notify` (if given), which lets an event loop wait without a thread.
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
        notify: Callable[[], None] | None = None,
        special_ids: frozenset[int] = frozenset(),
    ):
        self.prepared, self.params, self.result, self.cancel = prepared, params, result, cancel
        self.max_new_tokens = min(params.max_new_tokens, prepared.room_for_answer)
        stops = list(params.stop) + ([] if params.ignore_eos or not template_stop else [template_stop])
        self.eos_ids = frozenset() if params.ignore_eos else frozenset(eos_ids)
        self.text = AnswerText(tokenizer, stops, special_ids if params.skip_special_tokens else frozenset())
        # Drawn in the caller's thread, so torch.manual_seed there makes unseeded requests repeatable.
        self.seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        self.generator: torch.Generator | None = None  # made on the logits' device at the first sample
        self.submitted = time.monotonic()
        self.status = RequestStatus.WAITING
        self.notify = notify
        self._events: queue.SimpleQueue = queue.SimpleQueue()

    @property
    def finished(self) -> bool:
        return self.status.finished

    # ---- written by the worker thread --------------------------------------------------------
    def start(self) -> None:
        """The request got its place in the batch (its prefill begins)."""
        if self.status is RequestStatus.WAITING:
            self.status = RequestStatus.RUNNING

    def generator_on(self, device: torch.device) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.seed)
        return self.generator

    def accept(self, token_id: int, logprob: dict | None = None) -> None:
        """Record the next token (and its `logprob` entry, when asked); post the visible text it adds;
        finish on a stop or the budget."""
        if logprob is not None:
            if self.result.logprobs is None:
                self.result.logprobs = []
            self.result.logprobs.append(logprob)  # before the delta is posted: a reader sees both
        if self.result.time_to_first_token is None:
            self.result.time_to_first_token = time.monotonic() - self.submitted
        self.result.completion_tokens += 1
        stopped = token_id in self.eos_ids or self.text.add(token_id)
        events = []
        delta = self.text.visible_delta()
        if delta:
            self.result.text = self.text.shown
            events.append(delta)
        if stopped:
            events += self._finish(RequestStatus.FINISHED_STOPPED)
        elif self.result.completion_tokens >= self.max_new_tokens:
            events += self._finish(RequestStatus.FINISHED_LENGTH)
        self._post(events)

    def fail(self, error: BaseException) -> None:
        """End the row with `error` (raised in the request's thread): FINISHED_ABORTED for
        GenerationCancelled, FINISHED_ERROR otherwise."""
        aborted = isinstance(error, GenerationCancelled)
        self.status = RequestStatus.FINISHED_ABORTED if aborted else RequestStatus.FINISHED_ERROR
        self._post([error])

    def _finish(self, status: RequestStatus) -> list:
        final, shown = self.text.final(), self.text.shown
        self.result.text = final if final.startswith(shown) else shown
        self.result.finish_reason = status.finish_reason
        self.status = status
        return ([final[len(shown) :]] if len(final) > len(shown) and final.startswith(shown) else []) + [_DONE]

    def _post(self, events: list) -> None:
        for event in events:
            self._events.put(event)
        if events and self.notify is not None:
            self.notify()

    # ---- read by the request's thread (or event loop) ----------------------------------------
    def _check_cancelled(self, closing: threading.Event) -> None:
        if closing.is_set():
            raise GenerationCancelled("the server is shutting down")
        if self.cancel.is_set():
            raise GenerationCancelled("the request was cancelled")

    def _delta(self, event) -> str | None:
        """The text of a posted event; None once the answer is complete; raises a posted error."""
        if event is _DONE:
            return None
        if isinstance(event, BaseException):
            raise event
        return event

    def deltas(self, closing: threading.Event) -> Iterator[str]:
        """The answer's text deltas as the worker posts them; GenerationCancelled once `cancel` or
        `closing` is set, without waiting for the worker to notice."""
        while True:
            self._check_cancelled(closing)
            try:
                event = self._events.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if (delta := self._delta(event)) is None:
                return
            yield delta

    async def deltas_async(self, closing: threading.Event, wake: asyncio.Event) -> AsyncIterator[str]:
        """`deltas` for an event loop, without a thread: `notify` must set `wake` on this loop
        (`loop.call_soon_threadsafe(wake.set)`)."""
        while True:
            self._check_cancelled(closing)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                wake.clear()
                if self._events.empty():  # nothing was posted between the get and the clear
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), _POLL_S)
                continue
            if (delta := self._delta(event)) is None:
                return
            yield delta
