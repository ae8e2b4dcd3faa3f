"""`ChatEngine`: one loaded model behind the CLI, the gradio demo and the HTTP API.

It turns a chat (earlier turns, the new message, an optional image, an optional system prompt)
into a checked prompt, streams the answer as text deltas, and reports what happened: completion
tokens, why generation stopped, and, for a projector that routes (Parrot's `parrot_moe`), the
expert distribution the router chose for the image of this prompt.

One generation runs at a time, so concurrent requests do not fight over the CPU/GPU; servers queue
requests in front of it. Each request's routing comes from its own projector output
(`LlavaForCausalLM.prefill_inputs`); no model state is shared between requests. The slot belongs to
the generation's worker thread, which frees it the moment generation ends, so a consumer that
abandons its stream never holds the engine; cancelling a request (its `cancel` event) stops
generation at the next decoding step, whether it is running or still waiting for the slot.
`status()` says whether the running generation still advances; `shutdown()` stops everything for a
server that is exiting.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from PIL import Image
from transformers import StoppingCriteriaList, TextIteratorStreamer

from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from llava.image_limits import ImageShapeError, check_image_shape
from llava.inference import StopOnText, conversation_for, generation_inputs, strip_stop
from llava.mm_utils import tokenizer_image_token
from llava.model.builder import load_pretrained_model
from llava.model.multimodal_projector import ROUTING_METRIC
from llava.serve.engine_slot import EngineSlot, EngineStatus, StopWhenCancelled
from llava.serve.inputs import BadInputError, check_prompt_text, longest_token_chars, open_image

logger = logging.getLogger(__name__)

GENERATION_THREAD_NAME = "chat-engine-generate"
# Below this, logits divided by the temperature overflow to inf and sampling fails on NaN
# probabilities; such a temperature decodes greedily, the limit it tends to.
MIN_SAMPLING_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; `temperature` 0 means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.2
    top_p: float = 1.0

    def checked(self) -> SamplingParams:
        """Self (a temperature below MIN_SAMPLING_TEMPERATURE read as 0: greedy), or BadInputError
        naming the first setting out of range."""
        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            raise BadInputError(f"max_new_tokens must be a whole number >= 1, got {self.max_new_tokens!r}")
        if not 0.0 <= float(self.temperature) <= 2.0:
            raise BadInputError(f"temperature must be between 0 and 2, got {self.temperature!r}")
        if not 0.0 < float(self.top_p) <= 1.0:
            raise BadInputError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if 0.0 < float(self.temperature) < MIN_SAMPLING_TEMPERATURE:
            return replace(self, temperature=0.0)
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
    """Filled in while a stream runs; complete once the stream is exhausted."""

    text: str = ""
    completion_tokens: int = 0
    finish_reason: str | None = None
    routing: list[float] | None = field(default=None)


class _CountingStreamer(TextIteratorStreamer):
    """TextIteratorStreamer that also counts the generated tokens (batch size 1)."""

    generated = 0

    def put(self, value: torch.Tensor) -> None:
        if not (self.skip_prompt and self.next_tokens_are_prompt):
            self.generated += int(value.numel())
        super().put(value)


def _visible_text(text: str, stop_str: str, tokenizer) -> str:
    """The answer so far, without the stop string and without a half-arrived stop string at the end."""
    for k in range(len(stop_str) - 1, 0, -1):
        if text.endswith(stop_str[:k]):
            text = text[:-k]
            break
    return strip_stop(text, stop_str, tokenizer)


def _without_image_marker(text: str) -> str:
    return text.replace(DEFAULT_IMAGE_TOKEN, "").strip()


class ChatEngine:
    """A loaded LLaVA/Parrot model with prompt checks, streaming and the routing read-out."""

    def __init__(self, tokenizer, model, image_processor, context_len: int, name: str, max_image_pixels: int | None = None):
        self.tokenizer, self.model, self.image_processor = tokenizer, model, image_processor
        self.context_len = int(context_len)
        self.name = name
        self.max_image_pixels = max_image_pixels
        self._slot = EngineSlot()
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
        return cls(tokenizer, model, image_processor, context_len, display, max_image_pixels)

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
        (an extreme aspect ratio, or a square padding over the pixel limit; see `check_image_shape`)."""
        pads = getattr(self.model.config, "image_aspect_ratio", "square") == "pad"
        try:
            check_image_shape(image.size, pads_to_square=pads, max_pixels=self.max_image_pixels)
        except ImageShapeError as err:
            raise BadInputError(f"{name} {err}") from None
        return image

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
        message). `<image>` typed in any message (user, assistant or system) is dropped: only the
        server places the image, and a stray one would reach the LLM as an image sentinel. Raises
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
        images = sum(1 for i in ids if i == IMAGE_TOKEN_INDEX)
        prompt_tokens = len(ids) - images + images * self.model.num_image_tokens
        room = self.context_len - prompt_tokens
        if room < 1:
            extra = f" ({images * self.model.num_image_tokens} of them for the image)" if images else ""
            raise BadInputError(
                f"the prompt is {prompt_tokens} tokens{extra} but {self.name} reads at most {self.context_len}; "
                "shorten the message or clear the conversation"
            )
        return PreparedChat(prompt, image, prompt_tokens, room)

    # ---- the engine slot ----------------------------------------------------------------------
    def status(self) -> EngineStatus:
        return self._slot.status()

    def shutdown(self) -> None:
        """Stop the running generation at its next decoding step and refuse waiting and new ones."""
        self._slot.shutdown()

    # ---- generation ---------------------------------------------------------------------------
    def stream(
        self,
        prepared: PreparedChat,
        params: SamplingParams,
        result: GenerationResult | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the answer as text deltas; `result` (if given) is completed when the stream ends.

        max_new_tokens is clipped to the room left in the context. Waits while another generation
        runs. Setting `cancel` (from any thread) or closing the iterator stops generation at the
        next decoding step; a stream stopped by `cancel` or `shutdown` raises GenerationCancelled.
        """
        params = params.checked()
        result = result if result is not None else GenerationResult()
        cancel = cancel if cancel is not None else threading.Event()
        stop_str = conversation_for(self.model).stop_str
        max_new_tokens = min(params.max_new_tokens, prepared.room_for_answer)
        self._slot.acquire(cancel)
        try:
            streamer = _CountingStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=False)
            stopper = self._slot.stopping_criterion(cancel)
            worker, failures = self._start_generation(prepared, params, max_new_tokens, streamer, stopper, result)
        except BaseException:
            self._slot.release()
            raise
        text = shown = ""
        try:
            for chunk in streamer:
                text += chunk
                visible = _visible_text(text, stop_str, self.tokenizer)
                if len(visible) > len(shown) and visible.startswith(shown):
                    delta, shown = visible[len(shown) :], visible
                    result.text = shown
                    yield delta
        finally:
            cancel.set()
            if worker is not threading.current_thread():
                worker.join()
        if failures:
            raise failures[0]
        if stopper.fired:
            self._slot.raise_if_cancelled(cancel)
        final = strip_stop(text, stop_str, self.tokenizer)
        if len(final) > len(shown) and final.startswith(shown):
            yield final[len(shown) :]
        result.text = final if final.startswith(shown) else shown
        result.completion_tokens = streamer.generated
        hit_limit = streamer.generated >= max_new_tokens and stop_str not in text
        result.finish_reason = "length" if hit_limit else "stop"

    def _start_generation(
        self,
        prepared: PreparedChat,
        params: SamplingParams,
        max_new_tokens: int,
        streamer: TextIteratorStreamer,
        stopper: StopWhenCancelled,
        result: GenerationResult,
    ) -> tuple[threading.Thread, list[BaseException]]:
        """Prefill and decode on a worker thread feeding `streamer`; `result.routing` is set at prefill,
        before the first token. The worker owns the engine slot from here on and frees it when
        generation ends; its exception lands in the returned list."""
        ids, mask, pixels = generation_inputs(
            self.model, self.tokenizer, self.image_processor, [prepared.prompt], [prepared.image]
        )
        stop_str = conversation_for(self.model).stop_str
        sampling = params.temperature > 0
        kwargs = dict(
            images=pixels,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            temperature=params.temperature if sampling else None,
            top_p=params.top_p if sampling else None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([StopOnText(self.tokenizer, stop_str), stopper]),
            streamer=streamer,
        )
        failures: list[BaseException] = []

        def run() -> None:
            try:
                with torch.no_grad():
                    inputs, projected = self.model.prefill_inputs(ids, kwargs.pop("images"), kwargs.pop("attention_mask"))
                    if projected is not None and ROUTING_METRIC in projected.metrics:
                        result.routing = projected.metrics[ROUTING_METRIC][0].float().tolist()
                    self.model.language_model.generate(**inputs, **kwargs)
            except BaseException as err:  # re-raised by `stream`, in the consumer's thread
                failures.append(err)
                streamer.end()
            finally:
                self._slot.release()

        worker = threading.Thread(target=run, name=GENERATION_THREAD_NAME, daemon=True)
        worker.start()
        return worker, failures

    def generate(
        self, prepared: PreparedChat, params: SamplingParams, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """The whole answer at once (the stream, drained)."""
        result = GenerationResult()
        for _ in self.stream(prepared, params, result, cancel):
            pass
        return result
