"""The uvicorn server behind `llava.serve.api`: read deadlines for idle clients, bounded shutdown.

- Request heads have a deadline (`--header-timeout`): uvicorn by itself keeps a connection that
  sends nothing, or half a header, open for as long as the client likes. Idle connections never
  count against the generation limit (that limit is the app's, see `create_app`), so they cannot
  lock anyone out; the deadline only keeps them from piling up.
- Shutdown first stops the engine (the running generation ends at its next decoding step, waiting
  requests are refused), then lets uvicorn close the connections, and cancels what is still
  running after `--shutdown-timeout` seconds. A SIGTERM or SIGINT that started a clean shutdown
  is not raised again afterwards (uvicorn's default), so the process exits 0, not 143 or 130.
"""

from __future__ import annotations

import contextlib
import logging

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)


class ApiConfig(uvicorn.Config):
    """uvicorn.Config plus the request-head deadline read by `HeadDeadlineProtocol`."""

    def __init__(self, app, header_timeout: float, **kwargs):
        super().__init__(app, http=HeadDeadlineProtocol, **kwargs)
        self.header_timeout = header_timeout


class HeadDeadlineProtocol(H11Protocol):
    """h11 (no C parser needed) that closes a connection whose request head is not complete
    `header_timeout` seconds after the connection opened or the head's first byte arrived."""

    def __init__(self, config: ApiConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.header_timeout = config.header_timeout
        self._head_deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_head():
            self._arm_head_deadline()
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout, self._head_overdue)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if self._waiting_for_head() and not self.transport.is_closing():
            logger.info("closing %s: no complete request head within %.0f s", self.client, self.header_timeout)
            self.transport.close()


class ApiServer(uvicorn.Server):
    """uvicorn.Server that stops the engine before shutting down, so no stream keeps it waiting."""

    def __init__(self, config: ApiConfig, engine_loader):
        super().__init__(config)
        self.engine_loader = engine_loader

    async def shutdown(self, sockets=None) -> None:
        self.engine_loader.shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self):
        """uvicorn's, without re-raising SIGTERM/SIGINT after the graceful shutdown: uvicorn would
        end the process with 143/130 although everything closed cleanly; the API exits 0 instead."""
        with super().capture_signals():
            yield
            if self._captured_signals:
                logger.info("shut down cleanly after signal %s", ", ".join(map(str, self._captured_signals)))
            self._captured_signals.clear()


def build_server(
    app, host: str, port: int, header_timeout: float, shutdown_timeout: int, log_level: str = "info"
) -> ApiServer:
    """The server `python -m llava.serve.api` runs for `app` (from `create_app`; tests start the
    same one in a thread). The defaults of the timeouts are the API's flags'. Whether `host` may be
    served without an API key is decided before (`auth.check_network_exposure`)."""
    config = ApiConfig(
        app,
        header_timeout=header_timeout,
        host=host,
        port=port,
        timeout_graceful_shutdown=shutdown_timeout,
        log_level=log_level,
    )
    return ApiServer(config, app.state.engine_loader)
