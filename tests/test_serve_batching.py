"""Continuous batching in `ChatEngine`: a request decoded with others gets exactly what it gets
alone, rows join and leave between steps, and the routing of each request is its own."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from PIL import Image
from serve_helpers import chatty_parrot_engine, engine_with, wait_until

from llava.inference import generation_inputs
from llava.serve.engine import ChatEngine, GenerationCancelled, GenerationResult, SamplingParams

PROMPTS = ["What colour is it?", "这是什么颜色？", "Qual é a cor?", "ما هذا؟", "Bu ne renk?", "Какого цвета фигура?",
           "Describe the picture.", "Hello there"]
COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 20)]


@pytest.fixture(scope="module")
def engine(tiny_assets) -> ChatEngine:
    return chatty_parrot_engine(tiny_assets, max_batch_size=8)


def prepared(engine: ChatEngine, i: int, with_image: bool | None = None):
    image = Image.new("RGB", (40, 32), COLOURS[i % 4]) if (i % 2 == 0 if with_image is None else with_image) else None
    return engine.prepare(PROMPTS[i % len(PROMPTS)], image=image)


def summary(result: GenerationResult) -> tuple:
    return result.text, result.completion_tokens, result.finish_reason


def run_concurrently(engine: ChatEngine, jobs: list[tuple]) -> list[GenerationResult]:
    """`engine.generate(*job)` for every job at once, each on its own thread; results in job order."""
    barrier, results = threading.Barrier(len(jobs)), [None] * len(jobs)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = engine.generate(*jobs[i])

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(result is not None for result in results)
    return results


def test_concurrent_greedy_requests_with_their_own_limits_and_stops_get_what_each_gets_alone(engine):
    budgets = [10 + 3 * i for i in range(8)]
    unstopped = [engine.generate(prepared(engine, i), SamplingParams(budgets[i], temperature=0.0)) for i in range(8)]
    stops = [(answer.text[len(answer.text) // 2 :][:3],) if i % 3 == 0 else () for i, answer in enumerate(unstopped)]
    jobs = [(prepared(engine, i), SamplingParams(budgets[i], temperature=0.0, stop=stops[i])) for i in range(8)]
    alone = [engine.generate(*job) for job in jobs]
    steps_before = engine.status().steps

    together = run_concurrently(engine, jobs)

    assert [summary(r) for r in together] == [summary(r) for r in alone]
    assert {r.finish_reason for r in alone} == {"stop", "length"}
    assert engine.status().steps - steps_before < sum(r.completion_tokens for r in together) / 2  # shared passes


def test_seeded_sampling_draws_the_same_answer_alone_and_batched(engine):
    jobs = [(prepared(engine, i), SamplingParams(12, temperature=0.9, top_p=0.8, seed=100 + i)) for i in range(6)]
    alone = [engine.generate(*job) for job in jobs]
    together = run_concurrently(engine, jobs)
    assert [summary(r) for r in together] == [summary(r) for r in alone]
    assert len({r.text for r in alone}) == len(alone)


def test_routing_reported_per_request_equals_the_routing_of_that_request_alone(engine):
    jobs = [(prepared(engine, i, with_image=True), SamplingParams(4, temperature=0.0)) for i in range(6)]
    alone = [engine.generate(*job).routing for job in jobs]
    together = [result.routing for result in run_concurrently(engine, jobs)]
    for own, batched in zip(alone, together):
        assert batched == pytest.approx(own, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(alone[0], alone[1])) > 1e-4  # requests do route differently


def test_cancelling_one_stream_leaves_the_others_unchanged_and_its_place_goes_to_a_waiting_request(engine):
    small = engine_with(engine, max_batch_size=3)
    jobs = [(prepared(small, i), SamplingParams(30, temperature=0.0)) for i in (1, 2)]
    late = (prepared(small, 5), SamplingParams(6, temperature=0.0))
    alone, late_alone = [small.generate(*job) for job in jobs], small.generate(*late)
    finished: dict[str, tuple[float, GenerationResult]] = {}

    def run(name: str, job: tuple) -> None:
        result = small.generate(*job)
        finished[name] = (time.monotonic(), result)

    runners = [threading.Thread(target=run, args=(f"job{k}", job), daemon=True) for k, job in enumerate(jobs)]
    for thread in runners:
        thread.start()
    doomed = small.stream(prepared(small, 0), SamplingParams(30, temperature=0.0))
    next(doomed)
    assert wait_until(lambda: small.status().running == 3)
    waiting = threading.Thread(target=run, args=("late", late), daemon=True)
    waiting.start()
    assert wait_until(lambda: small.status().waiting == 1)  # the batch is full: it waits
    doomed.close()  # the client is gone: its row leaves at the next step, the waiting request joins
    for thread in [*runners, waiting]:
        thread.join(timeout=120)

    assert [summary(finished[f"job{k}"][1]) for k in range(2)] == [summary(r) for r in alone]
    assert summary(finished["late"][1]) == summary(late_alone)
    assert finished["late"][0] < min(finished[f"job{k}"][0] for k in range(2))  # it ran beside them


def test_a_cancelled_request_raises_and_the_batch_goes_on(engine):
    cancel = threading.Event()
    stream = engine.stream(prepared(engine, 3), SamplingParams(40, temperature=0.0), cancel=cancel)
    next(stream)
    cancel.set()
    with pytest.raises(GenerationCancelled):
        list(stream)
    assert engine.generate(prepared(engine, 4), SamplingParams(3, temperature=0.0)).completion_tokens == 3


def test_no_more_requests_than_the_max_batch_size_decode_together(engine):
    pair = engine_with(engine, max_batch_size=2)
    batch_sizes = []
    hook = pair.model.language_model.register_forward_hook(lambda _m, args, kwargs, _out: batch_sizes.append(
        (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]).shape[0]),
        with_kwargs=True)
    try:
        run_concurrently(pair, [(prepared(pair, i), SamplingParams(6, temperature=0.0)) for i in range(5)])
    finally:
        hook.remove()
    assert max(batch_sizes) == 2


def test_decode_loop_gives_the_tokens_of_transformers_generate(engine):
    chat = prepared(engine, 0)
    ours = engine.generate(chat, SamplingParams(12, temperature=0.0, ignore_eos=True))
    ids, mask, pixels = generation_inputs(engine.model, engine.tokenizer, engine.image_processor, [chat.prompt], [chat.image])
    with torch.no_grad():
        new = engine.model.generate(ids, images=pixels, attention_mask=mask, max_new_tokens=12, min_new_tokens=12,
                                    do_sample=False, pad_token_id=engine.tokenizer.pad_token_id)
    assert ours.completion_tokens == new.shape[1] == 12
    assert ours.text == engine.tokenizer.decode(new[0], skip_special_tokens=False).strip()
