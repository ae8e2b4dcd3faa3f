"""Chat-completions request validation, without a model or a server."""

from __future__ import annotations

import pytest

from llava.serve.engine import SamplingParams
from llava.serve.inputs import BadInputError
from llava.serve.openai_protocol import parse_chat_request

DEFAULTS = SamplingParams(max_new_tokens=64, temperature=0.2, top_p=1.0)


def parse(payload):
    return parse_chat_request(payload, load_image=lambda url: f"image from {url}", defaults=DEFAULTS)


def image_part(url: str = "data:image/png;base64,AAAA") -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def test_earlier_turns_become_history_and_the_last_user_message_the_prompt():
    request = parse({"messages": [
        {"role": "user", "content": "What colour?"},
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "你确定吗？"},
    ]})
    assert (request.history, request.message) == ([("What colour?", "Red.")], "你确定吗？")


def test_system_messages_become_the_system_prompt():
    request = parse({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})
    assert request.system == "Be brief."


def test_image_part_is_loaded_and_tied_to_its_user_turn():
    request = parse({"messages": [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "colour?"}, image_part("data:image/png;base64,QQ==")]},
    ]})
    assert (request.image, request.image_turn) == ("image from data:image/png;base64,QQ==", 1)


def test_sampling_settings_fall_back_to_the_server_defaults():
    assert parse({"messages": [{"role": "user", "content": "Hi"}]}).params == DEFAULTS


def test_max_tokens_temperature_and_top_p_are_read():
    request = parse({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 7, "temperature": 0.5, "top_p": 0.9})
    assert request.params == SamplingParams(max_new_tokens=7, temperature=0.5, top_p=0.9)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1, 2], "must be a JSON object"),
        ({}, "'messages' must be a non-empty list"),
        ({"messages": "hi"}, "'messages' must be a non-empty list"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "role one of system, developer, user, assistant"),
        ({"messages": [{"role": "user", "content": 5}]}, "content must be a string or a list"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "type 'text' or 'image_url'"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "last message must have role 'user'"),
        ({"messages": [{"role": "user", "content": [image_part(), image_part()]}]}, "at most one image"),
        ({"messages": [{"role": "assistant", "content": [image_part()]}, {"role": "user", "content": "x"}]}, "only user messages may carry images"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 9}, "'n' must be between 1 and 8"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream_options": {}}, "only allowed with 'stream': true"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": True}, "'temperature' must be a number"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "temperature must be between 0 and 2"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "'max_tokens' must be a whole number >= 1"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "'stream' must be true or false"),
    ],
)
def test_malformed_request_is_refused_with_a_reason(payload, reason):
    with pytest.raises(BadInputError, match=reason):
        parse(payload)
