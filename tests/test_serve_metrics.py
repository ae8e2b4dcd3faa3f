"""`/metrics` (Prometheus text format, read back with prometheus_client's own parser) and `/health`
while the model loads."""

from __future__ import annotations

import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import ServerThread, engine_with, forward_held, free_port, tiny_parrot_engine, wait_until

from llava.serve.api import create_app
from llava.serve.engine import SamplingParams

HELLO = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5, "temperature": 1.0}


@pytest.fixture(scope="module")
def server(tiny_assets):
    engine = engine_with(tiny_parrot_engine(tiny_assets), max_batch_size=1)
    with ServerThread(create_app(engine, defaults=SamplingParams(max_new_tokens=5, temperature=1.0)), free_port()) as running:
        running.engine = engine
        yield running


def scrape(server) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def chat(server, payload: dict) -> requests.Response:
    return requests.post(f"{server.url}/v1/chat/completions", json=payload, timeout=60)


def test_counters_move_with_the_requests(server):
    before = scrape(server)
    answers = [chat(server, HELLO), chat(server, {**HELLO, "stream": True})]
    assert chat(server, {"messages": []}).status_code == 400
    assert requests.get(f"{server.url}/v1/models", timeout=10).status_code == 200
    after = scrape(server)

    def moved(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert all(answer.status_code == 200 for answer in answers)
    assert moved("parrot_http_requests_total", route="/v1/chat/completions", status="200") == 2
    assert moved("parrot_http_requests_total", route="/v1/chat/completions", status="400") == 1
    assert moved("parrot_http_requests_total", route="/v1/models", status="200") == 1
    assert moved("parrot_http_request_duration_seconds_count", route="/v1/chat/completions") == 3
    assert moved("parrot_time_to_first_token_seconds_count") == 2
    assert moved("parrot_generated_tokens_total") == 10
    assert moved("parrot_forward_passes_total") == 10
    assert after[("parrot_model_loaded", ())] == 1 and after[("parrot_max_batch_size", ())] == 1


def test_unknown_paths_share_one_label(server):
    requests.get(f"{server.url}/no/such/{'x' * 8}", timeout=10)
    routes = {dict(labels)["route"] for name, labels in scrape(server) if name == "parrot_http_requests_total"}
    assert "other" in routes and not any(route.startswith("/no/") for route in routes)


def test_batch_size_and_queue_depth_show_running_and_waiting_requests(server):
    workers = [threading.Thread(target=chat, args=(server, HELLO), daemon=True) for _ in range(2)]
    with forward_held(server.engine) as entered:
        for worker in workers:
            worker.start()
        assert entered.wait(10) and wait_until(lambda: server.engine.status().waiting == 1)
        during = scrape(server)
    for worker in workers:
        worker.join(30)
    assert during[("parrot_batch_size", ())] == 1 and during[("parrot_queue_depth", ())] == 1
    assert scrape(server)[("parrot_queue_depth", ())] == 0


def test_health_says_whether_the_model_is_loaded(tiny_assets):
    loaded = threading.Event()
    engine = engine_with(tiny_parrot_engine(tiny_assets))

    def load():
        loaded.wait(30)
        return engine

    with ServerThread(create_app(load), free_port()) as running:
        loading = requests.get(f"{running.url}/health", timeout=10)
        refused = chat(running, HELLO)
        loaded.set()
        assert wait_until(lambda: requests.get(f"{running.url}/health", timeout=10).status_code == 200)
        ready = requests.get(f"{running.url}/health", timeout=10).json()
    assert loading.status_code == 503 and loading.json() == {"status": "loading", "model_loaded": False}
    assert refused.status_code == 503 and "still loading" in refused.json()["error"]["message"]
    assert ready["model_loaded"] is True and ready["status"] == "ok"


def test_a_model_that_fails_to_load_is_reported(tmp_path):
    failures = []

    def load():
        raise FileNotFoundError(f"{tmp_path}/missing: not a directory with a saved checkpoint")

    with ServerThread(create_app(load, on_load_failure=failures.append), free_port()) as running:
        assert wait_until(lambda: bool(failures))
        health = requests.get(f"{running.url}/health", timeout=10)
    assert health.status_code == 503 and health.json()["status"] == "failed"
    assert "not a directory" in health.json()["error"]
