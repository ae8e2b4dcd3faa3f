"""`/metrics` in the Prometheus text format (`prometheus-client`), one registry per app.

HTTP: `parrot_http_requests_total{route,status}` and `parrot_http_request_duration_seconds{route}`
(a histogram; a stream counts until its last byte), recorded by `MetricsMiddleware` around the
whole app, so refusals (401, 413, 503) count too. Routes outside `ROUTES` share the label `other`,
so random paths cannot grow the label set.

Generation: `parrot_time_to_first_token_seconds` (from the request reaching the engine to its first
token, queueing included), and what `EngineCollector` reads from the engine at scrape time:
`parrot_generated_tokens_total`, `parrot_forward_passes_total` (their ratio is the mean batch size),
`parrot_batch_size` (requests decoding now), `parrot_max_batch_size`, `parrot_queue_depth` (requests
waiting to join) and `parrot_model_loaded`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTES = frozenset({"/v1/chat/completions", "/v1/models", "/health", "/metrics"})
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class EngineCollector:
    """Reads the engine's status when Prometheus scrapes; `engine()` is None while the model loads."""

    def __init__(self, engine: Callable[[], object | None]):
        self.engine = engine

    def collect(self):
        engine = self.engine()
        status = engine.status() if engine is not None else None
        yield GaugeMetricFamily("parrot_model_loaded", "1 once the model is loaded and serving", value=int(engine is not None))
        yield CounterMetricFamily(
            "parrot_generated_tokens", "Tokens generated (all requests, cancelled ones included)",
            value=status.tokens_generated if status else 0,
        )
        yield CounterMetricFamily(
            "parrot_forward_passes", "Prefill and decoding steps of the batch", value=status.steps if status else 0
        )
        yield GaugeMetricFamily("parrot_batch_size", "Requests decoding in the running batch", value=status.running if status else 0)
        yield GaugeMetricFamily(
            "parrot_max_batch_size", "Most requests decoded together (--max-batch-size)",
            value=engine.max_batch_size if engine is not None else 0,
        )
        yield GaugeMetricFamily("parrot_queue_depth", "Requests waiting to join the batch", value=status.waiting if status else 0)


class ServeMetrics:
    def __init__(self, engine: Callable[[], object | None]):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "parrot_http_requests", "HTTP requests by route and status code", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "parrot_http_request_duration_seconds", "Time from request to the response's last byte",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "parrot_time_to_first_token_seconds", "Time from a request reaching the engine to its first token",
            buckets=TTFT_BUCKETS, registry=self.registry,
        )
        self.registry.register(EngineCollector(engine))

    def observe_first_token(self, seconds: float | None) -> None:
        if seconds is not None:
            self.time_to_first_token.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of a scrape."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request by route and status, with its duration."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        started, status = time.perf_counter(), 500  # an app that raises before answering counts as 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.requests.labels(route=route, status=str(status)).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)
