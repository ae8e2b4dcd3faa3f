"""The API driven by the `openai` client library: stop, seed, usage in the last stream chunk, and
clear 400s for what the server does not implement or a value out of range or for a field of the wrong type."""

from __future__ import annotations

import openai
import pytest
import requests
from serve_helpers import ServerThread, engine_with, free_port, tiny_parrot_engine

from llava.serve.api import create_app
from llava.serve.engine import SamplingParams

HELLO = [{"role": "user", "content": "Tell me about parrots."}]


@pytest.fixture(scope="module")
def server(tiny_assets):
    engine = engine_with(tiny_parrot_engine(tiny_assets))
    with ServerThread(create_app(engine, defaults=SamplingParams(max_new_tokens=8, temperature=1.0)), free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def ask(client, **settings):
    return client.chat.completions.create(model="tiny-parrot", messages=HELLO, **settings)


def test_the_same_seed_gives_the_same_answer_and_another_seed_another(client):
    first, again = ask(client, seed=11, max_tokens=12), ask(client, seed=11, max_tokens=12)
    other = ask(client, seed=12, max_tokens=12)
    assert first.choices[0].message.content == again.choices[0].message.content != other.choices[0].message.content


def test_stop_ends_the_answer_before_the_stop_string(client):
    free = ask(client, seed=5, max_tokens=16).choices[0].message.content
    stop = free[len(free) // 2 :][:2]
    stopped = ask(client, seed=5, max_tokens=16, stop=[stop, "never appears"]).choices[0]
    assert stopped.finish_reason == "stop" and stopped.message.content == free[: free.index(stop)].strip()


def test_usage_arrives_in_the_last_chunk_when_asked(client):
    chunks = list(ask(client, seed=3, max_tokens=6, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert chunks[-2].choices[0].finish_reason == "length"
    plain = list(ask(client, seed=3, max_tokens=6, stream=True))
    assert all(chunk.usage is None for chunk in plain)


def test_unknown_fields_are_ignored(client):
    answer = ask(client, max_tokens=3, user="someone", extra_body={"frobnicate": True, "store": False})
    assert answer.usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("settings", "named"),
    [({"n": 100}, "'n' must be between 1 and 8"), ({"top_logprobs": 2}, "'top_logprobs' needs 'logprobs'"),
     ({"logprobs": True, "top_logprobs": 21}, "'top_logprobs' must be between 0 and 20"),
     ({"presence_penalty": 2.5}, "'presence_penalty' must be between -2 and 2"),
     ({"logit_bias": {"99999999": 5}}, "'logit_bias' key"),
     ({"response_format": {"type": "json_object"}}, "'response_format'"),
     ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "'tools'")],
)
def test_features_not_implemented_or_out_of_range_get_400_naming_them(client, settings, named):
    with pytest.raises(openai.BadRequestError, match=named):
        ask(client, **settings)


@pytest.mark.parametrize(
    ("field", "value"),
    [("seed", "seven"), ("stop", 5), ("stop", ["a", "b", "c", "d", "e"]), ("temperature", "hot"),
     ("max_tokens", 1.5), ("n", "1"), ("ignore_eos", "yes"), ("logprobs", "no")],
)
def test_a_field_of_the_wrong_type_gets_400_naming_it(server, field, value):
    response = requests.post(f"{server.url}/v1/chat/completions", json={"messages": HELLO, field: value}, timeout=30)
    assert response.status_code == 400 and f"'{field}'" in response.json()["error"]["message"]


def test_stream_options_of_the_wrong_type_get_400_naming_the_field(server):
    payload = {"messages": HELLO, "stream": True, "stream_options": {"include_usage": "yes"}}
    response = requests.post(f"{server.url}/v1/chat/completions", json=payload, timeout=30)
    assert response.status_code == 400 and "'stream_options.include_usage'" in response.json()["error"]["message"]
