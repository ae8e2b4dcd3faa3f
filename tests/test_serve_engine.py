"""ChatEngine: prompt checks, streaming and the routing read-out, on a tiny untrained Parrot model."""

from __future__ import annotations

import threading

import pytest
import torch
from PIL import Image
from serve_helpers import engine_with, mlp_model_like, tiny_parrot_engine, wait_until

from llava.constants import DEFAULT_IMAGE_TOKEN
from llava.serve.engine import ChatEngine, GenerationCancelled, GenerationResult, SamplingParams
from llava.serve.inputs import BadInputError

# Greedy decoding of an untrained model repeats "\n" (an empty answer); sampling gives visible text.
VISIBLE = SamplingParams(max_new_tokens=8, temperature=1.0, top_p=1.0)




def red_image() -> Image.Image:
    return Image.new("RGB", (40, 32), (220, 30, 30))


@pytest.fixture(scope="module")
def engine(tiny_assets) -> ChatEngine:
    return tiny_parrot_engine(tiny_assets)


def test_stream_deltas_join_into_the_final_answer(engine):
    torch.manual_seed(0)
    result = GenerationResult()
    deltas = list(engine.stream(engine.prepare("这是什么颜色？", image=red_image()), VISIBLE, result))
    assert len(deltas) > 1 and "".join(deltas) == result.text != ""


def test_result_reports_tokens_and_why_generation_stopped(engine):
    torch.manual_seed(0)
    result = engine.generate(engine.prepare("What colour is it?", image=red_image()), VISIBLE)
    assert (result.completion_tokens, result.finish_reason) == (8, "length")


def test_text_only_prompt_is_not_stopped_by_the_stop_string_inside_the_prompt(engine):
    torch.manual_seed(0)
    assert engine.generate(engine.prepare("Hello there"), VISIBLE).completion_tokens == 8


def test_parrot_engine_reports_one_routing_probability_per_expert(engine):
    result = engine.generate(engine.prepare("Какого цвета фигура?", image=red_image()), VISIBLE)
    assert len(result.routing) == 6 and sum(result.routing) == pytest.approx(1.0, abs=1e-5)


def test_text_only_prompt_reports_no_stale_routing(engine):
    engine.generate(engine.prepare("Qual é a cor?", image=red_image()), VISIBLE)
    assert engine.generate(engine.prepare("Merhaba"), VISIBLE).routing is None


def test_non_parrot_model_explains_why_there_is_no_routing_view(engine):
    plain = engine_with(engine, model=mlp_model_like(engine), name="tiny-mlp")
    assert not plain.routes_experts
    assert "`mlp2x_gelu` projector, which has no experts" in plain.routing_unavailable_reason()


def test_empty_prompt_is_refused(engine):
    with pytest.raises(BadInputError, match="the prompt is empty"):
        engine.prepare("  \n ", image=red_image())


def test_prompt_over_the_context_is_refused_with_its_token_count(engine):
    with pytest.raises(BadInputError, match=r"the prompt is \d+ tokens \(\d+ of them for the image\) but tiny-parrot reads at most 4096"):
        engine.prepare("word " * 5000, image=red_image())


def test_max_new_tokens_is_clipped_to_the_room_left_in_the_context(engine):
    prepared = engine.prepare("What colour?", image=red_image())
    short = engine_with(engine, context_len=prepared.prompt_tokens + 3)
    result = short.generate(short.prepare("What colour?", image=red_image()), SamplingParams(50, 1.0, 1.0))
    assert result.completion_tokens == 3


def test_image_goes_into_the_first_user_turn_once(engine):
    prepared = engine.prepare("And now?", history=[("What colour?", "Red.")], image=red_image())
    first_user = prepared.prompt.index("What colour?")
    assert prepared.prompt.count(DEFAULT_IMAGE_TOKEN) == 1
    assert prepared.prompt.index(DEFAULT_IMAGE_TOKEN) < first_user < prepared.prompt.index("And now?")


def test_image_token_typed_by_a_user_is_dropped(engine):
    prepared = engine.prepare(f"{DEFAULT_IMAGE_TOKEN}{DEFAULT_IMAGE_TOKEN} what?")
    assert DEFAULT_IMAGE_TOKEN not in prepared.prompt


def test_system_prompt_replaces_the_template_default(engine):
    assert "Answer in one word." in engine.prepare("Hi", system="Answer in one word.").prompt


def test_closing_a_stream_early_stops_generation(engine):
    forward_calls = []
    hook = engine.model.language_model.register_forward_hook(lambda *args: forward_calls.append(1))
    try:
        torch.manual_seed(0)
        stream = engine.stream(engine.prepare("Describe it.", image=red_image()), SamplingParams(400, 1.0, 1.0))
        next(stream)
        stream.close()
    finally:
        hook.remove()
    assert len(forward_calls) < 100


def test_engine_serves_the_next_request_after_a_stream_was_closed(engine):
    stream = engine.stream(engine.prepare("Describe it."), SamplingParams(400, 1.0, 1.0))
    next(stream)
    stream.close()
    assert engine.generate(engine.prepare("Again?"), VISIBLE).finish_reason == "length"


def test_cancel_stops_generation_at_the_next_decoding_step(engine):
    cancel, forward_calls = threading.Event(), []

    def count_and_cancel_at_the_fifth(*_):
        forward_calls.append(1)
        if len(forward_calls) == 5:
            cancel.set()

    hook = engine.model.language_model.register_forward_hook(count_and_cancel_at_the_fifth)
    try:
        with pytest.raises(GenerationCancelled, match="cancelled"):
            engine.generate(engine.prepare("Describe it."), SamplingParams(400, 1.0, 1.0), cancel)
    finally:
        hook.remove()
    assert len(forward_calls) == 5


def test_a_stream_abandoned_without_closing_does_not_hold_the_engine(engine):
    abandoned = engine.stream(engine.prepare("Describe it."), SamplingParams(20, 1.0, 1.0))
    next(abandoned)  # suspended and never closed, as when a client vanishes and nothing collects it
    answered = []
    waiter = threading.Thread(
        target=lambda: answered.append(engine.generate(engine.prepare("Again?"), VISIBLE)), daemon=True
    )
    waiter.start()
    waiter.join(timeout=20)
    assert answered and answered[0].finish_reason == "length"
    abandoned.close()


def test_a_request_waiting_for_the_engine_is_released_by_cancel(engine):
    engine = engine_with(engine, max_batch_size=1)  # a full batch: the next request has to wait
    running = engine.stream(engine.prepare("Describe it."), SamplingParams(400, 1.0, 1.0))
    next(running)
    cancel, outcome = threading.Event(), []

    def wait_then_record() -> None:
        try:
            engine.generate(engine.prepare("Again?"), VISIBLE, cancel)
        except GenerationCancelled as err:
            outcome.append(err)

    waiter = threading.Thread(target=wait_then_record, daemon=True)
    waiter.start()
    assert wait_until(lambda: engine.status().waiting == 1)
    cancel.set()
    waiter.join(timeout=5)
    running.close()
    assert outcome and not waiter.is_alive()
