"""Helpers shared by the serving tests: a tiny Parrot engine, test images, and the API server run in
a background thread on 127.0.0.1, exactly as `python -m llava.serve.api` configures it."""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import torch
from conftest import build_tiny_llava
from PIL import Image

from llava.model import LlavaForCausalLM
from llava.serve.api import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_SHUTDOWN_TIMEOUT_S
from llava.serve.engine import ChatEngine
from llava.serve.http_server import build_server

_ENGINES: dict[str, ChatEngine] = {}


def tiny_parrot_engine(assets) -> ChatEngine:
    """An engine over a tiny untrained Qwen2 + CLIP model with the parrot_moe projector (cached:
    one model per test session)."""
    key = str(assets["qwen2"])
    if key not in _ENGINES:
        import parrot_moe  # noqa: F401  (registers the projector even without the entry point)

        model, tokenizer, image_processor = build_tiny_llava(assets, mm_projector_type="parrot_moe")
        context = model.config.text_config.max_position_embeddings
        _ENGINES[key] = ChatEngine(tokenizer, model, image_processor, context, name="tiny-parrot")
    return _ENGINES[key]


def chatty_parrot_engine(assets, max_batch_size: int = 8) -> ChatEngine:
    """A tiny Parrot engine whose greedy answers are varied text: the LLM's matrices are redrawn
    with std 0.3 (at the init std of 0.02 an untrained model repeats one token), so answers can
    differ between prompts and stop strings can be taken from them. Its own copy of the model."""
    base = tiny_parrot_engine(assets)
    model = copy.deepcopy(base.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.language_model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3, generator=generator)
    return engine_with(base, model=model, name="chatty-parrot", max_batch_size=max_batch_size)


def engine_with(engine: ChatEngine, **overrides) -> ChatEngine:
    """A new engine over the same tokenizer/processor, optionally with another `model=`,
    `context_len=`, `name=` or `max_batch_size=` (it has its own batch and worker)."""
    return ChatEngine(
        engine.tokenizer,
        overrides.get("model", engine.model),
        engine.image_processor,
        overrides.get("context_len", engine.context_len),
        overrides.get("name", engine.name),
        max_batch_size=overrides.get("max_batch_size", engine.max_batch_size),
    )


def mlp_model_like(engine: ChatEngine) -> LlavaForCausalLM:
    """A random-init LLaVA with the plain mlp2x_gelu projector and the same sizes (no routing)."""
    config = copy.deepcopy(engine.model.config)
    config.mm_projector_type = "mlp2x_gelu"
    return LlavaForCausalLM(config).eval()


def png_bytes(size: tuple[int, int] = (8, 6), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def thin_png(width: int, height: int) -> bytes:
    """A 1-bit PNG of `width` x `height`: a few hundred bytes even when it is 1 x 100,000."""
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression bomb's signature)."""
    data = bytearray(png_bytes((1, 1)))
    data[16:24] = struct.pack(">II", width, height)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR CRC over type + data
    return bytes(data)


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def forward_held(engine: ChatEngine) -> Iterator[threading.Event]:
    """Inside the block every forward of the engine's LLM blocks until the block exits (at most 30 s);
    yields an event that is set once a forward has started."""
    release, entered = threading.Event(), threading.Event()

    def hold(*_) -> None:
        entered.set()
        release.wait(30)

    hook = engine.model.language_model.register_forward_hook(hold)
    try:
        yield entered
    finally:
        hook.remove()
        release.set()


def wait_until(condition, timeout: float = 10) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class ServerThread:
    """The API server (`build_server`, as `python -m llava.serve.api` runs it) in a background thread."""

    def __init__(
        self,
        app,
        port: int,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
        shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT_S,
    ):
        self.port = port
        self.server = build_server(app, "127.0.0.1", port, header_timeout, shutdown_timeout, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the API server did not start within 30 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
