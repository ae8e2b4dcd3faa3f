"""Issue 28: the OpenAI protocol as OpenAI and vLLM clients use it, through the `openai` client
where it can express the request: `n`, logprobs, penalties and logit_bias, the `developer` role,
image-only messages, `model` names, `max_tokens` over the context, `stream_options` without
`stream`, non-JSON bodies, framework 404/405 in OpenAI's error shape, `skip_special_tokens`."""

from __future__ import annotations

import math
from dataclasses import replace

import openai
import pytest
import requests
from serve_helpers import (
    ServerThread,
    chatty_parrot_engine,
    data_url,
    engine_with,
    free_port,
    png_bytes,
    tiny_parrot_engine,
)

from llava.serve.api import create_app
from llava.serve.engine import SamplingParams

HELLO = [{"role": "user", "content": "Tell me about parrots."}]


@pytest.fixture(scope="module")
def server(tiny_assets):
    engine = chatty_parrot_engine(tiny_assets)
    app = create_app(engine, defaults=SamplingParams(max_new_tokens=8), served_model_names=("parrot-alias",))
    with ServerThread(app, free_port()) as running:
        running.engine = engine
        yield running


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def ask(client, messages=HELLO, **settings):
    return client.chat.completions.create(model="chatty-parrot", messages=messages, **settings)


def test_n_choices_come_back_seeded_per_sample_and_repeatable(client):
    answer = ask(client, n=3, seed=5, temperature=1.0, max_tokens=10)
    texts = [c.message.content for c in answer.choices]
    assert [c.index for c in answer.choices] == [0, 1, 2] and len(set(texts)) > 1
    assert texts == [c.message.content for c in ask(client, n=3, seed=5, temperature=1.0, max_tokens=10).choices]
    assert texts[0] == ask(client, seed=5, temperature=1.0, max_tokens=10).choices[0].message.content  # sample 0: the seed itself
    assert answer.usage.completion_tokens == sum(10 for _ in texts)


def test_logprobs_come_back_in_openais_shape(client):
    answer = ask(client, logprobs=True, top_logprobs=3, max_tokens=6, temperature=0)
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens == 6
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3 and entry.bytes == list(entry.token.encode())
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert entry.token == entry.top_logprobs[0].token  # greedy: the chosen token is the most likely one
        assert math.isclose(entry.logprob, entry.top_logprobs[0].logprob, abs_tol=1e-6)
    assert sum(math.exp(t.logprob) for t in content[0].top_logprobs) <= 1 + 1e-6


def test_streamed_logprobs_and_n_match_the_whole_answer(client):
    whole = ask(client, n=2, seed=9, temperature=1.0, logprobs=True, top_logprobs=2, max_tokens=8)
    text, entries = ["", ""], [[], []]
    for chunk in ask(client, n=2, seed=9, temperature=1.0, logprobs=True, top_logprobs=2, max_tokens=8, stream=True):
        for choice in chunk.choices:
            text[choice.index] += choice.delta.content or ""
            if choice.logprobs is not None:
                entries[choice.index] += [e.token for e in choice.logprobs.content]
    assert text == [c.message.content for c in whole.choices]
    assert entries == [[e.token for e in c.logprobs.content] for c in whole.choices]


def test_logit_bias_forces_a_token(client, server):
    token = 300  # an ordinary byte-pair token of the Qwen2 vocabulary
    forced = ask(client, logit_bias={str(token): 100}, max_tokens=4, temperature=0, logprobs=True)
    assert [e.token for e in forced.choices[0].logprobs.content] == [server.engine.tokenizer.decode([token])] * 4


@pytest.mark.parametrize("setting", [{"frequency_penalty": 2.0}, {"presence_penalty": 2.0}, {"repetition_penalty": 5.0}])
def test_a_penalty_breaks_the_repetition_of_an_untrained_model(tiny_assets, setting):
    engine = engine_with(tiny_parrot_engine(tiny_assets))  # its greedy answer repeats one token
    prepared = engine.prepare("Hi")
    plain = SamplingParams(max_new_tokens=6, temperature=0, ignore_eos=True, logprobs=True)
    repeated = [e["token"] for e in engine.generate(prepared, plain).logprobs]
    penalised = [e["token"] for e in engine.generate(prepared, replace(plain, **setting)).logprobs]
    engine.close()
    assert len(set(repeated)) == 1 and len(set(penalised)) > 1
    # the repetition penalty also covers the prompt's tokens (as vLLM's): it changes the first token too
    assert (penalised[0] == repeated[0]) == ("repetition_penalty" not in setting)


def test_the_developer_role_is_the_system_prompt(client):
    as_developer = ask(client, [{"role": "developer", "content": "Answer in French."}, *HELLO], temperature=0)
    as_system = ask(client, [{"role": "system", "content": "Answer in French."}, *HELLO], temperature=0)
    assert as_developer.choices[0].message.content == as_system.choices[0].message.content


def test_an_image_only_user_message_is_answered(client):
    image = {"type": "image_url", "image_url": {"url": data_url(png_bytes((16, 16)))}}
    answer = ask(client, [{"role": "user", "content": [image]}], max_tokens=4)
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 4


def test_model_names_are_checked_and_aliases_listed(client):
    assert [m.id for m in client.models.list().data] == ["chatty-parrot", "parrot-alias"]
    assert client.chat.completions.create(model="parrot-alias", messages=HELLO, max_tokens=2).usage.completion_tokens == 2
    with pytest.raises(openai.NotFoundError, match="'gpt-4o' does not exist; this server serves chatty-parrot, parrot-alias"):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)


def test_max_tokens_beyond_the_context_gets_400_naming_the_limit(client):
    with pytest.raises(openai.BadRequestError, match="reads at most 4096 tokens .* at most \\d+ tokens are left"):
        ask(client, max_tokens=100_000)


def test_stream_options_without_stream_get_400(client):
    with pytest.raises(openai.BadRequestError, match="'stream_options' is only allowed with 'stream': true"):
        ask(client, stream_options={"include_usage": True})


def test_a_body_that_is_not_json_gets_415(server):
    response = requests.post(f"{server.url}/v1/chat/completions", data='{"messages": []}',
                             headers={"Content-Type": "text/plain"}, timeout=30)
    assert response.status_code == 415 and "application/json" in response.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path", "status"), [("get", "/v1/chat/completions", 405), ("get", "/v1/nothing", 404),
                                                         ("post", "/v1/models", 405)])
def test_framework_errors_come_in_openais_error_shape(server, method, path, status):
    response = getattr(requests, method)(f"{server.url}{path}", timeout=30)
    assert response.status_code == status and set(response.json()) == {"error"}
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_special_tokens_are_left_out_of_the_text_unless_asked_for(tiny_assets):
    engine = engine_with(tiny_parrot_engine(tiny_assets))
    end = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    prepared = engine.prepare("Hi")
    biased = SamplingParams(max_new_tokens=3, temperature=0, ignore_eos=True, logit_bias=((end, 100.0),))
    assert engine.generate(prepared, biased).text == ""
    kept = engine.generate(prepared, replace(biased, skip_special_tokens=False)).text
    assert kept == "<|im_end|>" * 3
    engine.close()
