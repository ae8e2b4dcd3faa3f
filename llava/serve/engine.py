"""`ChatEngine`: one loaded model behind the CLI, the gradio demo and the HTTP API.

It turns a chat (earlier turns, the new message, an optional image, an optional system prompt)
into a checked prompt, streams the answer as text deltas, and reports what happened: completion
tokens, why generation stopped, and, for a projector that routes (Parrot's `parrot_moe`), the
expert distribution the router chose for the image of this prompt.

Requests are decoded in batches (`BatchScheduler`, continuous batching): one that arrives while
others generate joins them at the next decoding step, up to `max_batch_size` rows; each keeps its
own settings, seed, stop strings and routing (from its own projector output; no model state is
shared between requests). Cancelling a request (its `cancel` event, or closing its stream) takes
it out of the batch at the next step, whether it is running or still waiting. `status()` says
whether decoding still advances; `shutdown()` stops everything for a server that is exiting.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence

from PIL import Image

from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from llava.image_limits import ImageShapeError, check_image_shape
from llava.inference import conversation_for
from llava.mm_utils import process_images, tokenizer_image_token
from llava.model.builder import load_pretrained_model
from llava.model.multimodal_projector import ROUTING_METRIC
from llava.model.visual_tokens import image_positions, merged_length
from llava.serve.answer_text import special_token_ids
from llava.serve.decode_batch import DecodeBatch
from llava.serve.inputs import BadInputError, check_prompt_text, longest_token_chars, open_image
from llava.serve.request import (  # noqa: F401  (GenerationCancelled: part of this module's interface)
    GenerationCancelled,
    GenerationRequest,
    GenerationResult,
    PreparedChat,
    SamplingParams,
)
from llava.serve.scheduler import GENERATION_THREAD_NAME, BatchScheduler, EngineStatus  # noqa: F401

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 8
# Key in a checked image's `info`: the (size, pads to square, pixel limit) it passed `check_image`
# with, so that `prepare` does not check again an image its entry point (API, CLI) checked already.
_CHECKED_KEY = "parrot_checked_shape"


def eos_token_ids(model, tokenizer) -> list[int]:
    """Token ids that end an answer: the generation config's end-of-sequence ids and the tokenizer's."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return sorted({int(i) for i in [*ids, tokenizer.eos_token_id] if i is not None})


def _without_image_marker(text: str) -> str:
    """Only the server places the image: `<image>` typed in any message (system, user, assistant) is
    dropped, or it would reach the model as an image sentinel without an image."""
    return text.replace(DEFAULT_IMAGE_TOKEN, "").strip()


class ChatEngine:
    """A loaded LLaVA/Parrot model with prompt checks, streaming and the routing read-out."""

    def __init__(
        self,
        tokenizer,
        model,
        image_processor,
        context_len: int,
        name: str,
        max_image_pixels: int | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ):
        self.tokenizer, self.model, self.image_processor = tokenizer, model, image_processor
        self.context_len = int(context_len)
        self.name = name
        self.max_image_pixels = max_image_pixels
        self.template_stop = conversation_for(model).stop_str
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.special_ids = special_token_ids(tokenizer)
        self._scheduler = BatchScheduler(DecodeBatch(model, tokenizer), max_batch_size)
        # More characters than this never fit the context (no token is longer than the vocabulary's
        # longest), so such a text is refused before it is tokenized.
        self.max_prompt_chars = self.context_len * longest_token_chars(tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        model_path: str,
        model_base: str | None = None,
        device: str = "cpu",
        conv_mode: str | None = None,
        name: str | None = None,
        max_image_pixels: int | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        **load_kwargs,
    ) -> ChatEngine:
        """Load a checkpoint with `load_pretrained_model` (extra keyword arguments go to it);
        `conv_mode` overrides the chat template saved in the checkpoint."""
        tokenizer, model, image_processor, context_len = load_pretrained_model(
            model_path, model_base, device=device, **load_kwargs
        )
        if conv_mode:
            model.config.conv_template = conv_mode
        display = name or os.path.basename(os.path.normpath(model_path))
        return cls(tokenizer, model, image_processor, context_len, display, max_image_pixels, max_batch_size)

    # ---- what the model offers ----------------------------------------------------------------
    @property
    def accepts_images(self) -> bool:
        return self.image_processor is not None and getattr(self.model, "vision_tower", None) is not None

    @property
    def routes_experts(self) -> bool:
        """True for projectors that report their expert routing (`ROUTING_METRIC`), e.g. parrot_moe."""
        return self.accepts_images and ROUTING_METRIC in self.model.mm_projector.reported_metrics

    def routing_unavailable_reason(self) -> str | None:
        """Why there is no expert-routing view for this model, or None when there is one."""
        if not self.accepts_images:
            return f"{self.name} has no vision tower, so there is no projector and no expert routing."
        if not self.routes_experts:
            kind = getattr(self.model.config, "mm_projector_type", "unknown")
            return (
                f"{self.name} uses the `{kind}` projector, which has no experts; the routing view needs a "
                "Parrot checkpoint (trained with --mm_projector_type parrot_moe)."
            )
        return None

    # ---- inputs -------------------------------------------------------------------------------
    def load_image(self, source: bytes | str | os.PathLike, name: str = "image") -> Image.Image:
        """Decode an untrusted image with the checks of `llava.serve.inputs` and `check_image`."""
        if not self.accepts_images:
            raise BadInputError(f"{self.name} is a text-only model; send the message without an image")
        return self.check_image(open_image(source, name=name, max_pixels=self.max_image_pixels), name)

    def check_image(self, image: Image.Image, name: str = "image") -> Image.Image:
        """`image`, or BadInputError when preprocessing it for this model would multiply its pixels
        (an extreme aspect ratio, or a square padding over the pixel limit; see `check_image_shape`).
        An image is checked once: one that passed with its present size is not measured again."""
        checked = self._checked_shape(image)
        if image.info.get(_CHECKED_KEY) == checked:
            return image
        try:
            check_image_shape(image.size, pads_to_square=checked[1], max_pixels=self.max_image_pixels)
        except ImageShapeError as err:
            raise BadInputError(f"{name} {err}") from None
        image.info[_CHECKED_KEY] = checked
        return image

    def _checked_shape(self, image: Image.Image) -> tuple:
        pads = getattr(self.model.config, "image_aspect_ratio", "square") == "pad"
        return (tuple(image.size), pads, self.max_image_pixels)

    def prepare(
        self,
        message: str,
        history: Sequence[tuple[str, str]] = (),
        image: Image.Image | None = None,
        image_turn: int = 0,
        system: str | None = None,
    ) -> PreparedChat:
        """Render and check a chat: the new `message` after `history` [(user, assistant), ...].

        The image belongs to user turn `image_turn` (0 = the first turn, `len(history)` = the new
        message). `<image>` typed by a user is dropped: only the server places the image. Raises
        BadInputError for an empty message, text that is not valid Unicode or far too long to
        tokenize, an image sent to a text-only model or shaped to blow up in preprocessing, and a
        prompt that leaves no room for an answer in the model's context.
        """
        if not isinstance(message, str) or not message.strip():
            raise BadInputError("the prompt is empty; type a question or instruction")
        if image is not None and not self.accepts_images:
            raise BadInputError(f"{self.name} is a text-only model; send the message without an image")
        texts = [message, system or "", *(text for turn in history for text in turn)]
        check_prompt_text(texts, self.max_prompt_chars, f"{self.name} reads at most {self.context_len} tokens")
        if image is not None:
            self.check_image(image)
        users = [_without_image_marker(u) for u, _ in history] + [_without_image_marker(message)]
        if image is not None:
            turn = min(max(image_turn, 0), len(users) - 1)
            users[turn] = f"{DEFAULT_IMAGE_TOKEN}\n{users[turn]}"
        conv = conversation_for(self.model)
        if system is not None:
            conv.system = _without_image_marker(system)
        for user, (_, assistant) in zip(users, history):
            conv.append_message(conv.roles[0], user)
            conv.append_message(conv.roles[1], _without_image_marker(assistant))
        conv.append_message(conv.roles[0], users[-1])
        conv.append_message(conv.roles[1], None)
        prompt = conv.get_prompt()
        ids = tokenizer_image_token(prompt, self.tokenizer)
        images = ids.count(IMAGE_TOKEN_INDEX)
        prompt_tokens = merged_length(ids, self.model.num_image_tokens)
        room = self.context_len - prompt_tokens
        if room < 1:
            extra = f" ({image_positions(images, self.model.num_image_tokens)} of them for the image)" if images else ""
            raise BadInputError(
                f"the prompt is {prompt_tokens} tokens{extra} but {self.name} reads at most {self.context_len}; "
                "shorten the message or clear the conversation"
            )
        pixels = None if image is None else process_images([image], self.image_processor, self.model.config)
        return PreparedChat(prompt, image, prompt_tokens, room, tuple(ids), pixels)

    # ---- the batch --------------------------------------------------------------------------
    @property
    def max_batch_size(self) -> int:
        return self._scheduler.max_batch_size

    def status(self) -> EngineStatus:
        return self._scheduler.status()

    def shutdown(self) -> None:
        """Stop running generations at their next decoding step and refuse waiting and new ones."""
        self._scheduler.shutdown()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for the generation thread to end (see `BatchScheduler.wait_idle`); False on timeout."""
        return self._scheduler.wait_idle(timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """`shutdown`, then wait for the generation thread to end: call before the process exits."""
        self.shutdown()
        return self.wait_idle(timeout)

    # ---- generation ---------------------------------------------------------------------------
    def submit(
        self,
        prepared: PreparedChat,
        params: SamplingParams,
        result: GenerationResult | None = None,
        cancel: threading.Event | None = None,
        notify: Callable[[], None] | None = None,
    ) -> GenerationRequest:
        """Queue a generation and return its request, whose `deltas` (a thread) or `deltas_async`
        (an event loop; `notify` wakes it) give the answer. max_new_tokens is clipped to the room
        left in the context. The request joins the running batch at the next decoding step when
        there is room; setting `cancel` takes it out at the next step. Callers must set `cancel`
        when they stop reading (see `stream`)."""
        request = self._request(prepared, params.checked(), result, cancel, notify)
        self._scheduler.submit(request)
        return request

    def _request(self, prepared, params, result=None, cancel=None, notify=None) -> GenerationRequest:
        return GenerationRequest(
            prepared,
            params,
            result if result is not None else GenerationResult(),
            cancel if cancel is not None else threading.Event(),
            self.tokenizer,
            self.template_stop,
            self.eos_ids,
            notify,
            self.special_ids,
        )

    def submit_samples(
        self,
        prepared: PreparedChat,
        samples: Sequence[SamplingParams],
        cancel: threading.Event,
        notifies: Sequence[Callable[[], None] | None],
    ) -> list[GenerationRequest]:
        """One request per sample of one prompt (OpenAI's `n`), queued together so that they are
        prefilled and decoded in one batch; they share `cancel`."""
        requests = [self._request(prepared, p.checked(), None, cancel, n) for p, n in zip(samples, notifies)]
        self._scheduler.submit_all(requests)
        return requests

    def submit_all(
        self, prepared: Sequence[PreparedChat], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[GenerationRequest]:
        """`submit` for several chats (with the same settings, or one SamplingParams each), queued
        together so that they are prefilled in one batch when there is room (how
        `llava.inference.generate_batch` evaluates)."""
        each = [params] * len(prepared) if isinstance(params, SamplingParams) else list(params)
        if len(each) != len(prepared):
            raise ValueError(f"submit_all got {len(prepared)} chats but {len(each)} SamplingParams")
        requests = [self._request(chat, p.checked()) for chat, p in zip(prepared, each)]
        self._scheduler.submit_all(requests)
        return requests

    def release(self, request: GenerationRequest) -> None:
        """The caller stopped reading `request`: it leaves the queue now, or the batch at the next
        step (a no-op for a finished request)."""
        request.cancel.set()
        self._scheduler.withdraw(request)

    @property
    def closing(self) -> threading.Event:
        """Set once `shutdown` was called (what `deltas` and `deltas_async` watch)."""
        return self._scheduler.closing

    def stream(
        self,
        prepared: PreparedChat,
        params: SamplingParams,
        result: GenerationResult | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the answer as text deltas; `result` (if given) is completed when the stream ends.

        See `submit`. Setting `cancel` (from any thread) or closing the iterator stops the
        generation at the next decoding step; a stream stopped by `cancel` or `shutdown` raises
        GenerationCancelled.
        """
        request = self.submit(prepared, params, result, cancel)
        try:
            yield from request.deltas(self.closing)
        finally:
            self.release(request)

    def generate(
        self, prepared: PreparedChat, params: SamplingParams, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """The whole answer at once (the stream, drained)."""
        result = GenerationResult()
        for _ in self.stream(prepared, params, result, cancel):
            pass
        return result
