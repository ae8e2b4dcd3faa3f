"""Every error in OpenAI's envelope, the framework's own included.

FastAPI answers an unknown path (404) and a wrong method (405) with `{"detail": ...}`; OpenAI
clients read `{"error": {"message", "type", "param", "code"}}`. `install_error_handlers` makes the
app answer those, and any exception a route lets escape (500), in OpenAI's shape.

A client that closes its connection before its request body has arrived is counted as 499 (nginx's
"client closed request"), logged in one line: it is the client's doing, not a server error.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from llava.serve.openai_protocol import error_body

logger = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499
_KINDS = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error", 415: "invalid_request_error"}


def error_response(message: str, status: int, code: str | None = None) -> JSONResponse:
    kind = _KINDS.get(status, "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse(error_body(message, kind, code), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        if err.status_code == 404:
            message = f"no route {request.url.path}; this server answers /v1/chat/completions, /v1/models, /health, /metrics"
        elif err.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(err.detail)
        response = error_response(message, err.status_code)
        if err.headers:
            response.headers.update(err.headers)
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(f"internal server error: {type(err).__name__}", 500)
