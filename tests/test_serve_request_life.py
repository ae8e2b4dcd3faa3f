"""A request's life as one `RequestStatus`, the scheduler handing a freed place on in the same step,
and an image checked once, where it enters."""

from __future__ import annotations

import threading

import pytest
from PIL import Image
from serve_helpers import tiny_parrot_engine, wait_until

from llava.serve import engine as engine_module
from llava.serve.engine import GenerationCancelled, GenerationResult, PreparedChat, SamplingParams
from llava.serve.inputs import BadInputError
from llava.serve.request import GenerationRequest, RequestStatus
from llava.serve.scheduler import BatchScheduler

BUDGET = SamplingParams(max_new_tokens=4, temperature=1.0, ignore_eos=True, seed=0)


def request(tokens: int = 4) -> GenerationRequest:
    prepared = PreparedChat("prompt", None, prompt_tokens=3, room_for_answer=tokens, input_ids=(1, 2, 3))
    params = SamplingParams(max_new_tokens=100, temperature=0.0)
    return GenerationRequest(prepared, params, GenerationResult(), threading.Event(), None, "", [0])


class ScriptedBatch:
    """A decode batch without a model: each row finishes after `room_for_answer` tokens. It logs
    every admission and step (with the rows that took part) for the test to read."""

    def __init__(self):
        self.rows: list[GenerationRequest] = []
        self.log: list[tuple[str, list[int]]] = []
        self.tokens: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def room(self, max_rows: int) -> int:
        return max_rows - len(self.rows)

    def _advance(self, rows: list[GenerationRequest]) -> None:
        for row in rows:
            self.tokens[id(row)] = self.tokens.get(id(row), 0) + 1
            if self.tokens[id(row)] >= row.max_new_tokens:
                row.status = RequestStatus.FINISHED_LENGTH

    def admit(self, joining) -> None:
        self.log.append(("admit", [row.max_new_tokens for row in joining]))
        self.rows += list(joining)
        self._advance(list(joining))

    def step(self) -> None:
        self.log.append(("step", [row.max_new_tokens for row in self.rows]))
        self._advance(self.rows)

    def retire(self, closing: bool = False) -> None:
        for row in self.rows:
            if not row.finished and (closing or row.cancel.is_set()):
                row.fail(GenerationCancelled("cancelled"))
        self.rows = [row for row in self.rows if not row.finished]

    def fail(self, error) -> None:
        self.rows = []


def run_scripted(max_batch_size: int, requests: list[GenerationRequest]) -> list[tuple[str, list[int]]]:
    batch = ScriptedBatch()
    scheduler = BatchScheduler(batch, max_batch_size)
    with scheduler._lock:  # every request is queued before the worker takes the first one
        scheduler._waiting.extend(requests)
        scheduler._worker = threading.Thread(target=scheduler._run, daemon=True)
        scheduler._worker.start()
    assert wait_until(lambda: all(r.finished for r in requests))
    return batch.log


def test_with_one_place_the_second_request_starts_in_the_step_the_first_finishes():
    first, second = request(tokens=2), request(tokens=3)
    log = run_scripted(1, [first, second])
    # first: admitted (token 1), one step (token 2, done); second is admitted right after that step
    assert log == [("admit", [2]), ("step", [2]), ("admit", [3]), ("step", [3]), ("step", [3])]


def test_a_place_freed_by_a_step_goes_to_a_waiting_request_before_the_next_step():
    short, long, waiting = request(tokens=2), request(tokens=5), request(tokens=2)
    log = run_scripted(2, [short, long, waiting])
    # The step that ends `short` is followed by `waiting`'s admission, not by a step without it.
    assert log[:3] == [("admit", [2, 5]), ("step", [2, 5]), ("admit", [2])]
    assert log[3] == ("step", [5, 2])


def test_a_request_goes_from_waiting_to_running_to_one_finished_state(tiny_assets):
    engine = tiny_parrot_engine(tiny_assets)
    req = engine.submit(engine.prepare("Hello there"), BUDGET)
    assert req.status in (RequestStatus.WAITING, RequestStatus.RUNNING)
    assert "".join(req.deltas(engine.closing)) == req.result.text
    assert req.status is RequestStatus.FINISHED_LENGTH and req.finished
    assert req.result.finish_reason == "length" == req.status.finish_reason


def test_a_cancelled_request_ends_aborted_and_has_no_finish_reason(tiny_assets):
    engine = tiny_parrot_engine(tiny_assets)
    cancel = threading.Event()
    req = engine.submit(engine.prepare("Hello there"), SamplingParams(max_new_tokens=10_000, ignore_eos=True), cancel=cancel)
    assert wait_until(lambda: req.result.completion_tokens > 0)
    cancel.set()
    assert wait_until(lambda: req.finished)
    assert req.status is RequestStatus.FINISHED_ABORTED and req.status.finish_reason is None
    with pytest.raises(GenerationCancelled):
        list(req.deltas(engine.closing))


def test_an_image_checked_where_it_enters_is_not_measured_again(tiny_assets, monkeypatch):
    engine = tiny_parrot_engine(tiny_assets)
    calls = []
    real = engine_module.check_image_shape
    monkeypatch.setattr(engine_module, "check_image_shape", lambda *a, **k: calls.append(a) or real(*a, **k))
    image = engine.check_image(Image.new("RGB", (40, 32), (220, 30, 30)), "image_url")
    engine.prepare("What colour is it?", image=image)
    assert len(calls) == 1
    image.thumbnail((20, 16))  # a changed image is measured again
    engine.prepare("What colour is it?", image=image)
    assert len(calls) == 2


def test_an_image_given_straight_to_prepare_is_still_checked(tiny_assets):
    engine = tiny_parrot_engine(tiny_assets)
    with pytest.raises(BadInputError, match="1x1000"):
        engine.prepare("What is it?", image=Image.new("RGB", (1, 1000)))
