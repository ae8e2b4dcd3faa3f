"""Evaluation generates through the serving engine: `generate_batch` gives what `ChatEngine` gives."""

from __future__ import annotations

import pytest
from PIL import Image
from serve_helpers import chatty_parrot_engine

from llava import inference
from llava.inference import generate_batch
from llava.serve import scheduler
from llava.serve.engine import SamplingParams

QUESTIONS = ["What colour is it?", "这是什么颜色？", "Qual é a cor?", "Hello there"]


@pytest.fixture(scope="module")
def chatty(tiny_assets):
    return chatty_parrot_engine(tiny_assets)


def images():
    return [Image.new("RGB", (40, 32), c) for c in ((220, 30, 30), (30, 200, 30), (30, 30, 220))] + [None]


def test_greedy_batch_answers_are_the_engine_answers_of_each_question(chatty):
    answers = generate_batch(chatty.model, chatty.tokenizer, chatty.image_processor, QUESTIONS, images(), max_new_tokens=6)
    alone = [
        chatty.generate(chatty.prepare(q, image=i), SamplingParams(max_new_tokens=6, temperature=0.0)).text
        for q, i in zip(QUESTIONS, images())
    ]
    assert answers == alone and len(set(answers)) > 1


def test_generate_batch_decodes_on_the_engine_worker(chatty, monkeypatch):
    steps = []
    real = scheduler.BatchScheduler._progress
    monkeypatch.setattr(scheduler.BatchScheduler, "_progress", lambda self, n: steps.append((self, n)) or real(self, n))
    generate_batch(chatty.model, chatty.tokenizer, chatty.image_processor, QUESTIONS, images(), max_new_tokens=3)
    ours = inference._last_engine[1]._scheduler  # other engines' workers may still be finishing
    # one prefill for the whole batch, then two decoding steps of every row
    assert [n for owner, n in steps if owner is ours] == [len(QUESTIONS)] * 3


def test_a_streamer_is_refused_not_ignored(chatty):
    with pytest.raises(ValueError, match="streamer"):
        generate_batch(chatty.model, chatty.tokenizer, chatty.image_processor, ["Hi"], [None], streamer=object())
