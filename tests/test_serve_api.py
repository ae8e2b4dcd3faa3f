"""The OpenAI-compatible API over real HTTP on 127.0.0.1, driven with plain `requests`."""

from __future__ import annotations

import json

import pytest
import requests
import torch
from serve_helpers import (
    ServerThread,
    data_url,
    engine_with,
    free_port,
    png_bytes,
    png_claiming,
    tiny_parrot_engine,
)

from llava.serve.api import create_app, parse_args
from llava.serve.engine import SamplingParams

MAX_REQUEST_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def api(tiny_assets):
    engine = engine_with(tiny_parrot_engine(tiny_assets))  # its own slot: the server shuts it down at exit
    app = create_app(engine, MAX_REQUEST_BYTES, SamplingParams(max_new_tokens=8, temperature=1.0))
    with ServerThread(app, free_port()) as server:
        yield server.url


def image_message(text: str, url: str | None = None) -> dict:
    url = url or data_url(png_bytes((32, 32)))
    return {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}


def post(api: str, payload, **kwargs) -> requests.Response:
    if isinstance(payload, (dict, list)):
        return requests.post(f"{api}/v1/chat/completions", json=payload, timeout=60, **kwargs)
    return requests.post(f"{api}/v1/chat/completions", data=payload, timeout=60,
                         headers={"Content-Type": "application/json"}, **kwargs)


def sse_events(response: requests.Response) -> list:
    """The `data:` payloads of a server-sent-event stream, JSON-decoded except `[DONE]`."""
    events = []
    for line in response.iter_lines(decode_unicode=True):
        if line:
            assert line.startswith("data: "), line
            body = line[len("data: "):]
            events.append(body if body == "[DONE]" else json.loads(body))
    return events


def test_models_endpoint_lists_the_served_model(api):
    body = requests.get(f"{api}/v1/models", timeout=10).json()
    assert [m["id"] for m in body["data"]] == ["tiny-parrot"]


def test_completion_with_a_base64_image_answers_with_text_usage_and_routing(api):
    torch.manual_seed(0)
    response = post(api, {"model": "tiny-parrot", "messages": [image_message("这是什么颜色？")], "max_tokens": 8})
    body = response.json()
    assert response.status_code == 200, body
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == 8 and body["choices"][0]["finish_reason"] == "length"
    assert sum(body["routing"]["expert_weights"]) == pytest.approx(1.0, abs=1e-5)


def test_streamed_completion_sends_content_chunks_then_done(api):
    torch.manual_seed(0)
    payload = {"messages": [image_message("Какого цвета фигура?")], "stream": True, "max_tokens": 8,
               "stream_options": {"include_usage": True}}
    with post(api, payload, stream=True) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    chunks = [e for e in events if e != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert events[-1] == "[DONE]" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 1 and text
    assert chunks[-2]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"]["completion_tokens"] == 8


def test_multi_turn_text_only_chat_is_answered(api):
    torch.manual_seed(0)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Merhaba"}]
    assert post(api, {"messages": messages}).json()["choices"][0]["message"]["content"]


def test_malformed_json_gets_400_with_the_parse_error(api):
    response = post(api, '{"messages": [')
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("the request body is not valid JSON")


BAD_INPUT = {
    "non-image upload": ([image_message("colour?", data_url(b"%PDF-1.4 not an image", "image/png"))], "is not an image"),
    "corrupt image": ([image_message("colour?", data_url(png_bytes((64, 64))[:-30]))], "corrupt or truncated"),
    "decompression bomb": ([image_message("colour?", data_url(png_claiming(40_000, 40_000)))], "decompression-bomb"),
    "empty prompt": ([image_message("   ")], "the prompt is empty"),
    "prompt over the context": ([{"role": "user", "content": "word " * 5000}], "reads at most 4096"),
    "missing messages": (None, "'messages' must be a non-empty list"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gets_400_with_a_reason(api, case):
    messages, reason = BAD_INPUT[case]
    response = post(api, {"messages": messages} if messages is not None else {"model": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert reason in response.json()["error"]["message"]


def test_body_over_the_size_limit_gets_413(api):
    response = post(api, {"messages": [{"role": "user", "content": "x" * MAX_REQUEST_BYTES}]})
    assert response.status_code == 413 and "larger than" in response.json()["error"]["message"]


def test_server_keeps_serving_after_refusing_bad_input(api):
    assert post(api, "not json").status_code == 400
    assert post(api, {"messages": [image_message("colour?", data_url(b"junk"))]}).status_code == 400
    torch.manual_seed(0)
    assert post(api, {"messages": [image_message("What colour is it?")]}).status_code == 200


def test_api_binds_loopback_unless_told_otherwise():
    assert parse_args(["--model-path", "ckpt"]).host == "127.0.0.1"
    assert parse_args(["--model-path", "ckpt", "--host", "0.0.0.0"]).host == "0.0.0.0"
