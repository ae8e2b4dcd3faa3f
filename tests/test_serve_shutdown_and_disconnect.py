"""Issue 28: a client's own disconnect is not a server error (499, one log line, no traceback),
and `python -m llava.serve.api` exits 0 on SIGTERM."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from serve_helpers import ServerThread, engine_with, free_port, tiny_parrot_engine, wait_until

from llava.serve.api import create_app

HALF_SENT = 20


def half_sent_body(port: int) -> None:
    """Headers announcing 1000 bytes of body, 10 of them sent, then the connection closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"messages")
        time.sleep(0.05)


def counted(metrics: str, status: str) -> float:
    found = re.findall(rf'parrot_http_requests_total{{route="/v1/chat/completions",status="{status}"}} (\S+)', metrics)
    return float(found[0]) if found else 0.0


def test_half_sent_bodies_count_499_with_one_log_line_and_no_traceback(tiny_assets, caplog):
    engine = engine_with(tiny_parrot_engine(tiny_assets))
    uvicorn_log = logging.getLogger("uvicorn.error")  # where uvicorn logs "Exception in ASGI application"
    uvicorn_log.addHandler(caplog.handler)
    # at_level on "llava" itself: a training run earlier in the session may have set that logger's level
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="llava"), \
            ServerThread(create_app(engine), free_port()) as server:
        for _ in range(HALF_SENT):
            half_sent_body(server.port)

        def scrape() -> str:
            return requests.get(f"{server.url}/metrics", timeout=10).text

        assert wait_until(lambda: counted(scrape(), "499") == HALF_SENT, timeout=20), scrape()
        metrics = scrape()
        assert not re.search(r'status="5\d\d"', metrics), metrics
    uvicorn_log.removeHandler(caplog.handler)
    assert not any(record.exc_info for record in caplog.records)
    assert "Traceback" not in caplog.text and "Exception in ASGI application" not in caplog.text
    lines = [r for r in caplog.records if "closed the connection before its request body arrived" in r.getMessage()]
    assert len(lines) == HALF_SENT


def test_a_client_gone_before_its_whole_answer_counts_499(tiny_assets):
    engine = engine_with(tiny_parrot_engine(tiny_assets))
    body = b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3000, "ignore_eos": true}'
    with ServerThread(create_app(engine), free_port()) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            assert wait_until(lambda: engine.status().running == 1, timeout=20)

        def scrape() -> str:
            return requests.get(f"{server.url}/metrics", timeout=10).text

        assert wait_until(lambda: counted(scrape(), "499") == 1, timeout=20), scrape()
        assert wait_until(lambda: engine.status().running == 0, timeout=20)
        assert not re.search(r'status="5\d\d"', scrape())


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "streaming"])
def test_sigterm_exits_0(tiny_llava_checkpoint, busy):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "llava.serve.api", "--model-path", str(tiny_llava_checkpoint), "--port", str(port),
               "--device", "cpu", "--shutdown-timeout", "5"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def ready() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        assert wait_until(ready, timeout=120), "the API did not become ready"
        lines = None
        if busy:
            payload = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 3000, "ignore_eos": True}
            stream = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=payload, stream=True, timeout=60)
            lines = stream.iter_lines()
            assert next(lines).startswith(b"data:")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        if lines is not None:
            assert b"data: [DONE]" in list(lines)  # the stream ended in-band before the process did
        assert "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
