"""API keys for the servers: who may call them, and when a server may start without one.

- `ApiKeyMiddleware` requires `Authorization: Bearer <key>` on every path except the probes
  (`/health`, `/metrics`), so every `/v1` route, and any route added later, is closed by default. A
  missing or wrong key gets 401 in OpenAI's error shape (`code: invalid_api_key`).
- `check_network_exposure` refuses to serve a non-loopback address without a key unless the
  operator says so (`--allow-no-auth`); the API and the gradio demo both call it before loading.
- The key comes from `--api-key` or the `PARROT_API_KEY` environment variable (`resolve_api_key`):
  the variable keeps it out of `ps` listings and shell history.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

API_KEY_ENV = "PARROT_API_KEY"
PUBLIC_PATHS = frozenset({"/health", "/metrics"})


class InsecureBindError(ValueError):
    """A server asked to listen on the network with no API key and no `--allow-no-auth`."""


def resolve_api_key(flag_value: str | None) -> str | None:
    """The key from `--api-key`, else from `PARROT_API_KEY`; None when neither is set (or empty)."""
    key = flag_value if flag_value is not None else os.environ.get(API_KEY_ENV)
    return key or None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_network_exposure(host: str, api_key: str | None, allow_no_auth: bool, what: str = "the API") -> None:
    """Raise InsecureBindError for a non-loopback `host` without a key, unless `allow_no_auth`."""
    if is_loopback(host) or api_key:
        return
    if allow_no_auth:
        logger.warning("binding %s with --allow-no-auth: %s is reachable from the network by anyone", host, what)
        return
    raise InsecureBindError(
        f"--host {host} makes {what} reachable from the network, and no API key is set. Pass --api-key KEY "
        f"(or set {API_KEY_ENV}), or add --allow-no-auth to serve without authentication anyway."
    )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive)."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def key_matches(given: str | None, api_key: str) -> bool:
    """Constant-time comparison, so response timing does not reveal how much of a key was right."""
    return given is not None and hmac.compare_digest(given.encode(), api_key.encode())


def _unauthorized(message: str) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})


class ApiKeyMiddleware:
    """ASGI middleware: 401 for a request outside `PUBLIC_PATHS` without the right bearer key."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app, self.api_key = app, api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        token = bearer_token(headers.get("authorization"))
        if token is None:
            response = _unauthorized(
                "missing API key: send the header 'Authorization: Bearer <key>' with the key the server was "
                f"started with (--api-key or {API_KEY_ENV})"
            )
        elif not key_matches(token, self.api_key):
            response = _unauthorized("incorrect API key provided")
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
