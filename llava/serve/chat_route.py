"""`POST /v1/chat/completions`: read and check the request, generate, answer whole or as SSE.

Bodies over the size limit get 413, bodies slower than the body timeout 408, a Content-Type other
than JSON 415, malformed JSON and bad input 400, a `model` that is not served 404, each with the
reason in OpenAI's error envelope; a client that leaves before its body has arrived (or before its
whole answer) is logged in one line and answered 499. At most `max_concurrency` chat requests are
being checked, queued or generated at once (idle connections do not count); the others get 503 at
once. A client that goes away is noticed while its answer is generated: its request leaves the
batch at the next decoding step, and its place counts as free as soon as the response ends,
however it ends.

No `from __future__ import annotations` here: FastAPI reads the handler's annotations at runtime.
"""

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from llava.serve.chat_answers import event_stream, whole_answer
from llava.serve.engine import ChatEngine, GenerationCancelled, PreparedChat, SamplingParams
from llava.serve.errors import CLIENT_CLOSED_REQUEST, error_response
from llava.serve.inputs import BadInputError, decode_data_url
from llava.serve.metrics import ServeMetrics
from llava.serve.openai_protocol import ChatRequest, parse_chat_request
from llava.serve.streaming import GenerationStream

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class ChatLimits:
    max_request_bytes: int
    defaults: SamplingParams
    max_concurrency: int
    body_timeout: float
    aliases: tuple[str, ...] = ()  # names a request's `model` may give besides the engine's (--served-model-name)


class _TooLarge(Exception):
    pass


def refuse(message: str, status: int = 400) -> JSONResponse:
    logger.info("refused request (%d): %s", status, message)
    return error_response(message, status)


def served_names(name: str, aliases: tuple[str, ...]) -> tuple[str, ...]:
    """The names `/v1/models` lists and a request's `model` may give: the engine's, then the aliases."""
    return tuple(dict.fromkeys((name, *aliases)))


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return not media or media in JSON_TYPES or media.endswith("+json")


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

        chat = parse_chat_request(payload, load_image, limits.defaults, len(engine.tokenizer), engine.max_batch_size)
        prepared = engine.prepare(chat.message, chat.history, chat.image, chat.image_turn, chat.system)
        asked = next((payload[k] for k in ("max_completion_tokens", "max_tokens") if payload.get(k) is not None), None)
        if asked is not None and asked > prepared.room_for_answer:
            raise BadInputError(
                f"'max_tokens' is {asked} but {engine.name} reads at most {engine.context_len} tokens and the "
                f"prompt takes {prepared.prompt_tokens}: at most {prepared.room_for_answer} tokens are left for the answer"
            )
        return chat, prepared

    async def answer_whole(request: Request, engine: ChatEngine, chat: ChatRequest, prepared: PreparedChat):
        cancel = threading.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_disconnect, request.receive, cancel)
            try:
                return await whole_answer(engine, chat, prepared, cancel, metrics)
            except BadInputError as err:
                return refuse(str(err))
            except GenerationCancelled as err:
                if cancel.is_set() and not engine.closing.is_set():
                    logger.info("client closed the connection before its answer was complete")
                    return Response(status_code=CLIENT_CLOSED_REQUEST)
                return refuse(f"generation cancelled: {err}", status=503)
            except Exception as err:
                logger.exception("generation failed")
                return refuse(f"generation failed: {err}", status=500)
            finally:
                group.cancel_scope.cancel()

    def unknown_model(engine: ChatEngine, chat: ChatRequest) -> JSONResponse | None:
        served = served_names(engine.name, limits.aliases)
        if chat.model is None or chat.model in served:
            return None
        names = ", ".join(served)
        return refuse(f"the model '{chat.model}' does not exist; this server serves {names} (see /v1/models)", status=404)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        content_type = request.headers.get("content-type", "")
        if not _is_json(content_type):
            return refuse(f"the request body must be JSON (Content-Type: application/json), got {content_type!r}", status=415)
        try:
            body = await read_body(request)
        except ClientDisconnect:
            logger.info("client %s closed the connection before its request body arrived", request.client)
            return Response(status_code=CLIENT_CLOSED_REQUEST)
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
            if (wrong := unknown_model(engine, chat)) is not None:
                return wrong
            if not chat.stream:
                return await answer_whole(request, engine, chat, prepared)
            cancel = threading.Event()
            events = event_stream(engine, chat, prepared, cancel, metrics)
            response = GenerationStream(events, cancel, on_close=slots.give_back, headers=SSE_HEADERS)
            handed_over = True  # the stream gives the slot back when it ends
            return response
        finally:
            if not handed_over:
                slots.give_back()
