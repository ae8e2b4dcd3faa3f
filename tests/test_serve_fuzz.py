"""/v1/chat/completions against generated requests (issue 15): a real uvicorn server on 127.0.0.1
with a tiny Parrot model, and `hypothesis` generating the requests.

Three properties over more than 500 requests: a valid request with exactly one field made invalid
gets a 4xx whose message names that field; a conversation of any shape (roles in any order, any
text) is answered, or refused with a 4xx that says what is wrong with the messages; and any JSON
document or byte string at all gets an answer below 500, within a bounded time (no hang). The examples are derandomized, so CI sends the
same requests on every run; `--hypothesis-seed` explores others.
"""

from __future__ import annotations

import copy
import json
import math
import time

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from serve_helpers import ServerThread, data_url, engine_with, free_port, png_bytes, tiny_parrot_engine

from llava.serve.api import create_app
from llava.serve.engine import SamplingParams

REQUEST_TIMEOUT_S = 20  # a request without an answer by then counts as a hang
SENT: list[float] = []  # seconds each generated request took, over the whole module

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def server(tiny_assets):
    engine = engine_with(tiny_parrot_engine(tiny_assets))
    app = create_app(engine, 256 * 1024, SamplingParams(max_new_tokens=2, temperature=0.0), body_timeout=5.0)
    with ServerThread(app, free_port(), header_timeout=5.0) as running:
        running.session = requests.Session()
        yield running


def post(server, body: bytes) -> requests.Response:
    started = time.monotonic()
    response = server.session.post(f"{server.url}/v1/chat/completions", data=body, timeout=REQUEST_TIMEOUT_S,
                                   headers={"Content-Type": "application/json"})
    SENT.append(time.monotonic() - started)
    return response


def valid_request() -> dict:
    return {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": [{"type": "text", "text": "What colour is it?"},
                                                      {"type": "image_url", "image_url": {"url": data_url(png_bytes())}}]}],
            "max_tokens": 1, "temperature": 0.0}


def not_one_of(*allowed):
    return st.text(max_size=12).filter(lambda t: t not in allowed)


anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                        max_leaves=8)
truthy_non_object = (st.integers().filter(bool) | st.text(min_size=1, max_size=8) | st.lists(st.integers(), min_size=1)
                     | st.booleans().filter(bool))
not_a_number = st.text(max_size=8) | st.booleans() | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(), st.integers())

# field -> (where it sits in the request, bad values for it, words of which the 400 must contain one)
BAD_FIELDS = {
    "messages": ((), st.just([]) | st.integers() | st.text(max_size=8) | st.dictionaries(st.text(), st.integers()),
                 ("'messages'",)),
    "messages[1]": (("messages", 1), st.integers() | st.text() | st.fixed_dictionaries(
        {"role": not_one_of("system", "developer", "user", "assistant"), "content": st.text()}), ("messages[1]",)),
    "messages[1].content": (("messages", 1, "content"), st.integers() | st.floats() | st.booleans()
                            | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2), ("messages[1].content",)),
    "messages[1].content[0]": (("messages", 1, "content", 0), st.integers() | st.text() | st.fixed_dictionaries(
        {"type": not_one_of("text", "image_url")}), ("messages[1].content[0]",)),
    "messages[1].content[0].text": (("messages", 1, "content", 0, "text"),
                                    st.integers() | st.none() | st.lists(st.text(), max_size=2),
                                    ("messages[1].content[0].text",)),
    "messages[1].content[1].image_url": (("messages", 1, "content", 1, "image_url"),
                                         st.integers() | st.none() | st.text(max_size=30)
                                         | st.builds(lambda s: {"url": "data:image/png;base64," + s},
                                                     st.text(max_size=30)),
                                         ("image_url",)),
    "max_tokens": (("max_tokens",), st.integers(max_value=0) | st.floats() | not_a_number, ("'max_tokens'",)),
    "temperature": (("temperature",), st.floats(min_value=2.0, exclude_min=True) | st.floats(max_value=0.0,
                    exclude_max=True) | st.just(math.nan) | not_a_number, ("temperature",)),
    "top_p": (("top_p",), st.floats(min_value=1.0, exclude_min=True) | st.floats(max_value=0.0)
              | st.just(math.nan) | not_a_number, ("top_p",)),
    "stream": (("stream",), st.integers() | st.text() | st.floats() | st.lists(st.none(), max_size=2), ("'stream'",)),
    "stream_options": (("stream_options",), truthy_non_object, ("'stream_options'",)),
    "n": (("n",), st.integers().filter(lambda n: not 1 <= n <= 8), ("'n' must be between 1 and 8",)),
}


def with_value(request: dict, where: tuple, value) -> dict:
    bad = copy.deepcopy(request)
    if not where:
        return {"messages": value}
    target = bad
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    return bad


@st.composite
def one_bad_field(draw):
    field = draw(st.sampled_from(sorted(BAD_FIELDS)))
    where, values, words = BAD_FIELDS[field]
    return field, with_value(valid_request(), where, draw(values)), words


@FUZZ
@given(case=one_bad_field())
def test_request_with_one_bad_field_gets_a_4xx_that_names_the_field(server, case):
    field, body, words = case
    response = post(server, json.dumps(body).encode())
    assert 400 <= response.status_code < 500, (field, body, response.status_code, response.text[:300])
    message = response.json()["error"]["message"]
    assert any(word in message for word in words), (field, message)


@FUZZ
@given(body=anything | st.fixed_dictionaries({"messages": anything}, optional={"max_tokens": anything,
       "temperature": anything, "stream": anything, "n": anything}) | st.binary(max_size=64))
def test_any_body_gets_an_answer_below_500(server, body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = post(server, raw)
    assert response.status_code < 500, (raw[:200], response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


text = st.text(max_size=40) | st.sampled_from(["", " ", "<image>", "\ud800", "\x00", "مرحبا", "你好" * 30])
message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": text})
conversation = st.fixed_dictionaries(
    {"messages": st.lists(message, min_size=1, max_size=5)},
    optional={"max_tokens": st.integers(1, 2), "temperature": st.floats(0, 2), "top_p": st.floats(0.01, 1),
              "stream": st.booleans(), "n": st.just(1)},
)


@FUZZ
@given(body=conversation)
@example(body={"messages": [{"role": "system", "content": "<image>"}, {"role": "user", "content": "0"}]})  # was a 500
@example(body={"messages": [{"role": "assistant", "content": "<image>"}, {"role": "user", "content": "0"}]})
@example(body={"messages": [{"role": "user", "content": "0"}], "max_tokens": 1, "temperature": 3.5e-48})  # was a 500
def test_conversation_of_any_shape_is_answered_or_refused_naming_what_is_wrong(server, body):
    response = post(server, json.dumps(body).encode())
    assert response.status_code == 200 or 400 <= response.status_code < 500, (body, response.text[:300])
    if response.status_code != 200:
        message = response.json()["error"]["message"]
        assert any(word in message for word in ("messages", "role", "content", "prompt", "text")), (body, message)


def test_valid_request_is_still_served_after_the_fuzzing(server):
    response = post(server, json.dumps(valid_request()).encode())
    assert response.status_code == 200 and response.json()["choices"][0]["finish_reason"] in ("stop", "length")
    assert len(SENT) > 500, f"only {len(SENT)} requests were sent"
    assert max(SENT) < REQUEST_TIMEOUT_S
