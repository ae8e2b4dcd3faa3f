"""The API against clients that hold it up (issue 15): a body sent byte by byte, an oversized body,
a thousand idle connections. Real uvicorn on 127.0.0.1, raw sockets, bounded time."""

from __future__ import annotations

import resource
import socket
import time
import warnings

import pytest
import requests
from serve_helpers import ServerThread, engine_with, free_port, tiny_parrot_engine

from llava.serve.api import create_app
from llava.serve.engine import SamplingParams

BODY_TIMEOUT_S = 1.0
HEADER_TIMEOUT_S = 1.0
MAX_REQUEST_BYTES = 64 * 1024
IDLE_CONNECTIONS = 1000
VALID = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}


def start_server(tiny_assets, header_timeout: float) -> ServerThread:
    engine = engine_with(tiny_parrot_engine(tiny_assets))
    app = create_app(engine, MAX_REQUEST_BYTES, SamplingParams(max_new_tokens=2, temperature=0.0),
                     body_timeout=BODY_TIMEOUT_S)
    return ServerThread(app, free_port(), header_timeout=header_timeout)


@pytest.fixture(scope="module")
def server(tiny_assets):
    with start_server(tiny_assets, HEADER_TIMEOUT_S) as running:
        yield running


def head(length: int | None, chunked: bool = False) -> bytes:
    size = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{size}\r\n"
            ).encode()


def answer(sock: socket.socket, until: bytes | None = None) -> bytes:
    """What the server sent until it closed the connection, sent `until`, or went quiet for 5 s."""
    sock.settimeout(5)
    received = b""
    try:
        while (chunk := sock.recv(65536)) and not (until and until in received + chunk):
            received += chunk
        received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def test_body_sent_byte_by_byte_is_cut_off_at_the_body_timeout(server):
    body = b'{"messages": [{"role": "user", "content": "' + b"a" * 200 + b'"}]}'
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head(len(body)))
        started, reply = time.monotonic(), b""
        sock.setblocking(False)
        for byte in body:  # 0.05 s per byte: 12 s for the whole body, each byte well within any idle timeout
            try:
                sock.send(bytes([byte]))
                reply += sock.recv(4096)
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
            if reply:
                break
            time.sleep(0.05)
        took = time.monotonic() - started
        sock.setblocking(True)
        reply += answer(sock, until=b"--body-timeout")
    assert reply.startswith(b"HTTP/1.1 408") and b"--body-timeout" in reply, reply[:300]
    assert BODY_TIMEOUT_S <= took < BODY_TIMEOUT_S + 2


def test_request_head_sent_byte_by_byte_is_cut_off_at_the_header_timeout(server):
    request_head = head(2)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        started = time.monotonic()
        try:
            for byte in request_head:
                sock.send(bytes([byte]))
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert answer(sock) == b""  # closed without a response
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 3


def test_declared_body_over_the_limit_is_refused_before_it_is_sent(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head(50 * MAX_REQUEST_BYTES))  # and not one byte of the body
        assert answer(sock, until=b"\r\n").startswith(b"HTTP/1.1 413")


def test_chunked_body_over_the_limit_is_refused_before_it_ends(server):
    chunk = b"x" * 8192
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head(None, chunked=True))
        for _ in range(MAX_REQUEST_BYTES // len(chunk) + 2):  # just over the limit, and no final chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert answer(sock, until=b"\r\n").startswith(b"HTTP/1.1 413")


def usable_connections(wanted: int) -> int:
    """Raise this process's soft file-descriptor limit toward its hard one; each idle connection
    costs two descriptors here (client and server run in this process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 2 * wanted + 512
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, hard), hard))
    usable = min(wanted, (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 512) // 2)
    if usable < wanted:
        warnings.warn(f"the file-descriptor limit ({hard}) allows only {usable} idle connections", stacklevel=2)
    return usable


def test_a_thousand_idle_connections_do_not_stop_a_valid_request(tiny_assets):
    count = usable_connections(IDLE_CONNECTIONS)
    assert count >= 100
    # Idle connections stay open for a minute here, so they are all still there when the request comes.
    with start_server(tiny_assets, header_timeout=60) as running:
        idle = [socket.create_connection(("127.0.0.1", running.port), timeout=10) for _ in range(count)]
        try:
            started = time.monotonic()
            response = requests.post(f"{running.url}/v1/chat/completions", json=VALID, timeout=30)
            took = time.monotonic() - started
            assert len(running.server.server_state.connections) >= count  # all accepted, none dropped
            for sock in idle:
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(1)  # still open: nothing to read, and not closed
        finally:
            for sock in idle:
                sock.close()
    assert response.status_code == 200 and took < 10, (response.status_code, took)
