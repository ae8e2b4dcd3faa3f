"""The OpenAI chat-completions wire format: request validation and response/chunk bodies.

Pure functions, no HTTP: `parse_chat_request` turns a decoded JSON body into a `ChatRequest` or
raises `BadInputError` with the reason the client gets in its HTTP 400. Supported: `messages` with
`system` / `developer` (read as system) / `user` / `assistant` roles, content as a string or a list
of `text` and `image_url` parts (base64 data URLs only, one image per conversation; a user message
with only an image asks `IMAGE_ONLY_PROMPT`), `model` (one of the served names), `max_tokens` (or
`max_completion_tokens`), `temperature`, `top_p`, `stop` (a string or up to 4), `seed`, `stream`,
`stream_options.include_usage`, and the fields of `openai_fields` (`n`, `logprobs`, penalties,
`logit_bias`, vLLM's `repetition_penalty`, `skip_special_tokens` and `ignore_eos`).

Fields this server does not know are ignored. A known field of the wrong type gets a 400 naming it;
so does a feature it does not implement (tools, JSON mode), rather than being accepted and
silently ignored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from llava.serve.inputs import BadInputError
from llava.serve.openai_fields import MAX_N, extended_params, sample_count
from llava.serve.request import MAX_STOP_STRINGS, GenerationResult, PreparedChat, SamplingParams

ROLES = ("system", "developer", "user", "assistant")
# What a user message that carries only an image asks (OpenAI and vLLM answer such a message).
IMAGE_ONLY_PROMPT = "Describe this image."
# OpenAI fields that this server does not implement, with the values that mean "not used".
UNSUPPORTED = {
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}),
}


@dataclass
class ChatRequest:
    """A validated request: the chat in engine terms plus the decoding settings."""

    message: str
    history: list[tuple[str, str]]
    image: Image.Image | None
    image_turn: int
    system: str | None
    params: SamplingParams
    stream: bool
    include_usage: bool
    n: int = 1
    model: str | None = None


def _number(payload: dict, key: str, default: float) -> float:
    value = payload.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInputError(f"'{key}' must be a number, got {value!r}")
    return float(value)


def _boolean(payload: dict, key: str, default: bool, name: str | None = None) -> bool:
    value = payload.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadInputError(f"'{name or key}' must be true or false, got {value!r}")
    return value


def _integer(payload: dict, key: str) -> int | None:
    value = payload.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise BadInputError(f"'{key}' must be an integer, got {value!r}")
    return value


def _stop_strings(payload: dict) -> tuple[str, ...]:
    value = payload.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > MAX_STOP_STRINGS or not all(isinstance(s, str) and s for s in stops):
        raise BadInputError(f"'stop' must be a non-empty string or a list of at most {MAX_STOP_STRINGS}, got {value!r}")
    return tuple(stops)


def _refuse_unsupported(payload: dict) -> None:
    for key, unused in UNSUPPORTED.items():
        if payload.get(key) not in unused:
            raise BadInputError(f"'{key}' is not supported by this server; leave it out")


def _whole_number(payload: dict, keys: tuple[str, ...], default: int) -> int:
    for key in keys:
        value = payload.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInputError(f"'{key}' must be a whole number >= 1, got {value!r}")
        return value
    return default


def _content_parts(content: object, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise BadInputError(f"{where}.content must be a string or a list of content parts")
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
            raise BadInputError(f"{where}.content[{j}] must be an object with type 'text' or 'image_url'")
    return content


def _image_url(part: dict, where: str) -> str:
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise BadInputError(f"{where}.image_url must be {{'url': 'data:image/...;base64,...'}}")
    return url


def _merged_turns(messages: list) -> tuple[str | None, list[tuple[str, str, list[str]]]]:
    """(system, [(role, text, image_urls)]) with consecutive messages of one role merged."""
    system_texts: list[str] = []
    turns: list[tuple[str, str, list[str]]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise BadInputError(f"{where} must be an object with role one of {', '.join(ROLES)}")
        texts, urls = [], []
        for j, part in enumerate(_content_parts(message.get("content", ""), where)):
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise BadInputError(f"{where}.content[{j}].text must be a string")
                texts.append(part["text"])
            else:
                urls.append(_image_url(part, f"{where}.content[{j}]"))
        role, text = message["role"], "\n".join(t for t in texts if t)
        if urls and role != "user":
            raise BadInputError(f"{where}: only user messages may carry images")
        if urls and not text and role == "user":
            text = IMAGE_ONLY_PROMPT
        if role in ("system", "developer"):
            system_texts.append(text)
        elif turns and turns[-1][0] == role:
            prev_role, prev_text, prev_urls = turns[-1]
            turns[-1] = (role, "\n".join(t for t in (prev_text, text) if t), prev_urls + urls)
        else:
            turns.append((role, text, urls))
    return ("\n".join(system_texts) if system_texts else None), turns


def parse_chat_request(
    payload: object, load_image: Callable[[str], Image.Image], defaults: SamplingParams, vocab: int = 2**31, max_n: int = MAX_N
) -> ChatRequest:
    """Validate a decoded `/v1/chat/completions` body; `load_image(data_url)` decodes the image;
    `vocab` bounds logit_bias's token ids, `max_n` the samples."""
    if not isinstance(payload, dict):
        raise BadInputError("the request body must be a JSON object with a 'messages' list")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadInputError("'messages' must be a non-empty list of {role, content} objects")
    _refuse_unsupported(payload)
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise BadInputError(f"'model' must be a string, got {model!r}")
    n = sample_count(payload, max_n)
    system, turns = _merged_turns(messages)
    if turns and turns[0][0] == "assistant":
        turns.insert(0, ("user", "", []))
    if not turns or turns[-1][0] != "user":
        raise BadInputError("the last message must have role 'user'")
    users = [t for t in turns if t[0] == "user"]
    answers = [t[1] for t in turns if t[0] == "assistant"]
    with_image = [k for k, (_, _, urls) in enumerate(users) if urls]
    if sum(len(urls) for _, _, urls in users) > 1:
        raise BadInputError("send at most one image per conversation")
    image = load_image(users[with_image[0]][2][0]) if with_image else None
    stream = _boolean(payload, "stream", False)
    options = payload.get("stream_options")
    if options is not None and not stream:
        raise BadInputError("'stream_options' is only allowed with 'stream': true")
    options = options or {}
    if not isinstance(options, dict):
        raise BadInputError(f"'stream_options' must be an object, got {options!r}")
    params = SamplingParams(
        max_new_tokens=_whole_number(payload, ("max_completion_tokens", "max_tokens"), defaults.max_new_tokens),
        temperature=_number(payload, "temperature", defaults.temperature),
        top_p=_number(payload, "top_p", defaults.top_p),
        stop=_stop_strings(payload),
        seed=_integer(payload, "seed"),
        ignore_eos=_boolean(payload, "ignore_eos", False),
    )
    params = extended_params(payload, params, vocab).checked()
    return ChatRequest(
        message=users[-1][1],
        history=[(u[1], a) for u, a in zip(users[:-1], answers)],
        image=image,
        image_turn=with_image[0] if with_image else 0,
        system=system,
        params=params,
        stream=stream,
        include_usage=_boolean(options, "include_usage", False, name="stream_options.include_usage"),
        n=n,
        model=model,
    )


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prepared: PreparedChat, results: GenerationResult | list[GenerationResult]) -> dict:
    """Usage of one prompt and its answers (the prompt counted once, as OpenAI does for `n`)."""
    completion = sum(r.completion_tokens for r in (results if isinstance(results, list) else [results]))
    return {
        "prompt_tokens": prepared.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prepared.prompt_tokens + completion,
    }


def completion_body(
    completion_id: str, model: str, prepared: PreparedChat, results: GenerationResult | list[GenerationResult],
    logprobs: bool = False,
) -> dict:
    """A `chat.completion` object with one choice per result; `routing` (an extension) holds the
    expert distribution, if any (the image, and so the routing, is the same for every choice)."""
    results = results if isinstance(results, list) else [results]
    choices = []
    for index, result in enumerate(results):
        choice = {"index": index, "message": {"role": "assistant", "content": result.text}, "finish_reason": result.finish_reason}
        if logprobs:
            choice["logprobs"] = {"content": list(result.logprobs or [])}
        choices.append(choice)
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(prepared, results),
    }
    if results[0].routing is not None:
        body["routing"] = {"expert_weights": results[0].routing}
    return body


def chunk_body(
    completion_id: str, model: str, delta: dict, finish_reason: str | None = None, index: int = 0,
    logprobs: list[dict] | None = None,
) -> dict:
    """One `chat.completion.chunk` of a stream (choice `index`; `logprobs`: the tokens it covers)."""
    choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict:
    """OpenAI's error envelope: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
