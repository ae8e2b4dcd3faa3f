"""API keys: the API and the demo on 127.0.0.1 with a key, and the refusal to serve the network
without one."""

from __future__ import annotations

import logging

import openai
import pytest
import requests
from serve_helpers import ServerThread, engine_with, free_port, tiny_parrot_engine

from llava.serve import api
from llava.serve.api import create_app
from llava.serve.auth import API_KEY_ENV, InsecureBindError, check_network_exposure
from llava.serve.engine import SamplingParams

KEY = "sk-test-0123456789"
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def server(tiny_assets):
    engine = engine_with(tiny_parrot_engine(tiny_assets))
    app = create_app(engine, defaults=SamplingParams(max_new_tokens=4, temperature=1.0), api_key=KEY)
    with ServerThread(app, free_port()) as running:
        yield running


def client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30)


def test_the_right_key_gets_an_answer(server):
    answer = client(server, KEY).chat.completions.create(model="tiny-parrot", messages=HELLO, max_tokens=4)
    assert answer.usage.completion_tokens == 4


def test_no_key_gets_401_in_openai_error_shape(server):
    response = requests.post(f"{server.url}/v1/chat/completions", json={"messages": HELLO}, timeout=30)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "Authorization: Bearer" in response.json()["error"]["message"]


def test_a_wrong_key_gets_401(server):
    with pytest.raises(openai.AuthenticationError) as refused:
        client(server, "sk-wrong").chat.completions.create(model="tiny-parrot", messages=HELLO)
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"


def test_every_v1_route_needs_the_key(server):
    assert requests.get(f"{server.url}/v1/models", timeout=10).status_code == 401
    assert [m.id for m in client(server, KEY).models.list()] == ["tiny-parrot"]


def test_health_and_metrics_answer_without_the_key(server):
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 200


def test_api_on_the_network_without_a_key_refuses_to_start_before_loading(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert api.main(["--model-path", str(tmp_path / "never-loaded"), "--host", "0.0.0.0"]) == 2
    error = capsys.readouterr().err
    assert "--host 0.0.0.0" in error and "--api-key" in error and "--allow-no-auth" in error


@pytest.mark.parametrize(
    ("host", "key", "allow"), [("127.0.0.1", None, False), ("::1", None, False), ("0.0.0.0", KEY, False)]
)
def test_loopback_or_a_key_may_serve(host, key, allow):
    check_network_exposure(host, key, allow)


def test_allow_no_auth_serves_the_network_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="llava.serve.auth"):
        check_network_exposure("0.0.0.0", None, allow_no_auth=True)
    assert "reachable from the network by anyone" in caplog.text


def test_the_key_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, KEY)
    check_network_exposure("0.0.0.0", api.resolve_api_key(None), allow_no_auth=False)
    monkeypatch.setenv(API_KEY_ENV, "")
    with pytest.raises(InsecureBindError):
        check_network_exposure("0.0.0.0", api.resolve_api_key(None), allow_no_auth=False)


def test_demo_on_the_network_without_a_key_refuses_to_start(monkeypatch):
    from playground.demo import app as demo

    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with pytest.raises(SystemExit, match="--allow-no-auth"):
        demo.main(["--host", "0.0.0.0", "--model-path", "never-loaded"])
    with pytest.raises(SystemExit, match="--api-key"):
        demo.main(["--share", "--model-path", "never-loaded"])


def test_demo_with_a_key_asks_for_it_at_login(tiny_assets):
    from playground.demo.app import parse_args, start_demo

    port = free_port()
    demo = start_demo(tiny_parrot_engine(tiny_assets), parse_args(["--port", str(port), "--api-key", KEY]), block=False)
    url = f"http://127.0.0.1:{port}"
    try:
        session = requests.Session()
        assert session.get(f"{url}/config", timeout=10).status_code == 401
        assert session.post(f"{url}/login", data={"username": "me", "password": "wrong"}, timeout=10).status_code == 400
        assert session.post(f"{url}/login", data={"username": "me", "password": KEY}, timeout=10).status_code == 200
        assert session.get(f"{url}/config", timeout=10).status_code == 200
    finally:
        demo.close()
