"""Property (issue 28): `n`, penalties, logit_bias and logprobs keep batch invariance. A greedy
request's answer and logprobs are the same alone and decoded beside any neighbours, whatever
settings (samples, penalties, logprobs) the neighbours use and whatever the request itself uses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serve_helpers import chatty_parrot_engine

from llava.serve.engine import ChatEngine, SamplingParams

PROMPTS = ["What colour is it?", "Hello there", "这是什么颜色？", "Describe the picture."]


@pytest.fixture(scope="module")
def engine(tiny_assets) -> ChatEngine:
    return chatty_parrot_engine(tiny_assets, max_batch_size=8)


penalty = st.sampled_from([0.0, 0.0, -1.0, 1.5])
row_settings = st.builds(
    SamplingParams,
    max_new_tokens=st.integers(2, 6),
    temperature=st.sampled_from([0.0, 0.0, 0.8]),
    seed=st.integers(0, 2**31),
    ignore_eos=st.just(True),
    frequency_penalty=penalty,
    presence_penalty=penalty,
    repetition_penalty=st.sampled_from([1.0, 1.0, 0.7, 3.0]),
    logit_bias=st.sampled_from([(), ((300, 5.0),), ((300, -100.0), (17, 3.0))]),
    logprobs=st.booleans(),
)
greedy_target = row_settings.map(lambda p: SamplingParams(**{**p.__dict__, "temperature": 0.0, "logprobs": True, "top_logprobs": 3}))


def decode(engine: ChatEngine, chats, params) -> list:
    requests = engine.submit_all(chats, params)
    for request in requests:
        for _ in request.deltas(engine.closing):
            pass
    return [(r.result.text, r.result.logprobs) for r in requests]


def same(alone, batched) -> bool:
    (text, lps), (text_b, lps_b) = alone, batched
    tokens = [e["token"] for e in lps] == [e["token"] for e in lps_b]
    close = all(abs(a["logprob"] - b["logprob"]) < 1e-3 for a, b in zip(lps, lps_b))
    tops = [[t["token"] for t in e["top_logprobs"]] for e in lps] == [[t["token"] for t in e["top_logprobs"]] for e in lps_b]
    return text == text_b and tokens and close and tops


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(target=greedy_target, prompt=st.integers(0, 3), neighbours=st.lists(st.tuples(row_settings, st.integers(0, 3), st.integers(1, 3)), max_size=3))
def test_a_greedy_request_is_the_same_alone_and_beside_any_neighbours(engine, target, prompt, neighbours):
    chat = engine.prepare(PROMPTS[prompt])
    alone = decode(engine, [chat], [target])[0]
    chats, params = [chat], [target]
    for settings_, which, n in neighbours:  # n samples of one neighbour prompt, as the API submits them
        chats += [engine.prepare(PROMPTS[which])] * n
        params += [settings_] * n
    batched = decode(engine, chats, params)[0]
    assert same(alone, batched), (alone, batched)
