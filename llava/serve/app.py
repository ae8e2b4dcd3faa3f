"""`create_app`: the FastAPI application of `python -m llava.serve.api`.

Routes: `POST /v1/chat/completions` (`chat_route`), `GET /v1/models`, `GET /health`, `GET /metrics`
(`metrics`). Middleware, outermost first: request metrics, then the API key (`auth`) when one is set.

The model may still be loading when the app starts (`create_app` takes a loader function as well
as an engine): `/health` then answers 503 with `"model_loaded": false`, and chat requests 503, so the
port answers probes during a long load. `/health` also answers 503 when the running batch has not
advanced for `stall_seconds`, or when the model failed to load.
"""

import logging
import threading
from collections.abc import Callable

from llava.optional import require, require_gradio
from llava.serve.engine import ChatEngine, SamplingParams

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 20 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_STALL_S = 120.0


class EngineLoader:
    """The engine being served: given, or loaded by `load()` in a background thread.

    `on_failure(error)` runs in that thread if loading raises (the API exits then)."""

    def __init__(self, engine_or_load: ChatEngine | Callable[[], ChatEngine], on_failure=None):
        self.engine: ChatEngine | None = None
        self.error: BaseException | None = None
        if isinstance(engine_or_load, ChatEngine):
            self.engine = engine_or_load
            return
        self._load, self._on_failure = engine_or_load, on_failure
        threading.Thread(target=self._run, name="model-loader", daemon=True).start()

    def _run(self) -> None:
        try:
            self.engine = self._load()
        except BaseException as err:
            # What the user can fix (a path, a flag, a missing package) needs no traceback.
            expected = isinstance(err, (FileNotFoundError, ValueError, ImportError, RuntimeError))
            logger.error("loading the model failed: %s", err, exc_info=not expected)
            self.error = err
            if self._on_failure is not None:
                self._on_failure(err)

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()


def create_app(
    engine: ChatEngine | Callable[[], ChatEngine],
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    defaults: SamplingParams | None = None,
    max_concurrency: int = 16,
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
    stall_seconds: float = DEFAULT_STALL_S,
    api_key: str | None = None,
    on_load_failure: Callable[[BaseException], None] | None = None,
    served_model_names: tuple[str, ...] = (),
):
    """The FastAPI application serving `engine` (or the engine that calling it loads)."""
    require_gradio()  # fastapi and uvicorn come with gradio (the serve extra): one message if missing
    require("prometheus_client")
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    from llava.serve.auth import ApiKeyMiddleware
    from llava.serve.chat_route import ChatLimits, add_chat_route, refuse, served_names
    from llava.serve.errors import install_error_handlers
    from llava.serve.metrics import MetricsMiddleware, ServeMetrics

    defaults = (defaults or SamplingParams()).checked()
    loader = EngineLoader(engine, on_load_failure)
    metrics = ServeMetrics(lambda: loader.engine)
    app = FastAPI(title="Parrot OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine_loader = loader
    install_error_handlers(app)
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last: outermost, so it counts 401s too
    add_chat_route(app, lambda: loader.engine, ChatLimits(max_request_bytes, defaults, max_concurrency, body_timeout, tuple(served_model_names)), metrics)

    @app.get("/health")
    async def health() -> JSONResponse:
        engine = loader.engine
        if engine is None:
            state = "failed" if loader.error is not None else "loading"
            body = {"status": state, "model_loaded": False}
            if loader.error is not None:
                body["error"] = str(loader.error)
            return JSONResponse(body, status_code=503)
        status = engine.status()
        since = status.seconds_since_progress
        stalled = since is not None and since > stall_seconds
        state = "shutting_down" if status.shutting_down else "stalled" if stalled else "ok"
        body = {
            "status": state,
            "model_loaded": True,
            "model": engine.name,
            "generating": status.busy,
            "running": status.running,
            "waiting": status.waiting,
            "max_batch_size": engine.max_batch_size,
            "seconds_since_progress": None if since is None else round(since, 1),
            "stall_seconds": stall_seconds,
        }
        return JSONResponse(body, status_code=200 if state == "ok" else 503)

    @app.get("/v1/models")
    async def models():
        if loader.engine is None:
            return refuse("the model is still loading; retry when /health reports status ok", status=503)
        names = served_names(loader.engine.name, tuple(served_model_names))
        cards = [{"id": name, "object": "model", "created": 0, "owned_by": "parrot"} for name in names]
        return {"object": "list", "data": cards}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app
