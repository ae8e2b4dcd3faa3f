"""The optional judge hook: a Python callable or an OpenAI-compatible endpoint."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from llava.eval.judge import EndpointJudge, JudgeQuery, load_judge

QUERY = JudgeQuery("What colour is the car?", {"A": "red", "B": "blue"}, "It looks bluish to me", "en")


@pytest.fixture
def endpoint():
    """A local chat-completions server that answers "B" and records what it was sent."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": "B"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", received
    server.shutdown()
    server.server_close()


def test_endpoint_judge_posts_a_chat_completion_and_returns_the_reply(endpoint, monkeypatch):
    url, received = endpoint
    monkeypatch.setenv("JUDGE_KEY", "secret")
    judge = load_judge(url, model="local-judge", api_key_env="JUDGE_KEY")
    assert judge(QUERY) == "B"
    (request,) = received
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "local-judge" and request["body"]["temperature"] == 0
    assert "It looks bluish to me" in request["body"]["messages"][-1]["content"]
    assert request["auth"] == "Bearer secret"


def unused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_gives_no_answer_and_is_dropped_after_repeated_failures(caplog):
    judge = EndpointJudge(f"http://127.0.0.1:{unused_port()}/v1", timeout=2, max_failures=2)
    assert [judge(QUERY) for _ in range(3)] == [None, None, None]
    assert caplog.text.count("failed (") == 2
    assert "scoring goes on without it" in caplog.text


def test_callable_judge_is_loaded_from_module_and_function(tmp_path, monkeypatch):
    (tmp_path / "my_judges.py").write_text("def always_a(query):\n    return 'A'\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_judge("my_judges:always_a")(QUERY) == "A"


@pytest.mark.parametrize("spec", ["no_colon_here", "json:no_such_function"])
def test_bad_judge_spec_is_rejected_with_the_accepted_forms(spec):
    with pytest.raises(ValueError, match="--judge"):
        load_judge(spec)
