"""The chat endpoint: the official `openai` client, our own retries, a request budget, usage.

The library's built-in retries are off (`max_retries=0`) so that every HTTP attempt is counted
against `--max-requests` and shown as in flight. Retried: 408, 409, 429, 5xx, timeouts and dropped
connections, with exponential backoff and jitter; a `Retry-After` (or `retry-after-ms`) header
sets the wait instead. A 400/422 rejects that one request; 401/403/404 stop the run.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from llava.optional import require

openai = require("openai")
logger = logging.getLogger(__name__)

MAX_WAIT_S = 600.0


class BudgetSpent(Exception):
    """--max-requests requests were sent in this run."""


class RequestFailed(Exception):
    """This request did not produce an answer to check.

    `api_error` (retries used up) leaves the unit pending for the next run; `bad_request` (the
    server refused this content) and `malformed_response` (no chat answer in the reply) are final
    and become rejects."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail

    @property
    def final(self) -> bool:
        return self.reason != "api_error"


class EndpointError(RuntimeError):
    """The endpoint, key or model is wrong: nothing can succeed until the user fixes it."""


@dataclass
class ClientSettings:
    base_url: str
    model: str
    api_key: str
    key_source: str  # where the key came from, for messages: "$OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 120.0
    retries: int = 6
    backoff: float = 1.0
    max_requests: int | None = None
    temperature: float = 0.0


@dataclass
class Usage:
    requests: int = 0
    retried: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0  # spent translating (first request to last answer)


def retry_after_seconds(headers) -> float | None:
    """The server's requested wait: `retry-after-ms`, or `Retry-After` in seconds or as an HTTP date."""
    if headers is None:
        return None
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        date = email.utils.parsedate_to_datetime(value)
        return None if date is None else max(0.0, date.timestamp() - time.time())


def _describe(err: Exception) -> str:
    status = getattr(err, "status_code", None)
    return f"HTTP {status}" if status else type(err).__name__


class ChatTranslator:
    """Sends (system, text) to the chat endpoint with at most `concurrency` requests in flight."""

    def __init__(self, settings: ClientSettings, on_in_flight: Callable[[str, int], None] | None = None):
        self.settings = settings
        self.usage = Usage()
        self.in_flight: Counter[str] = Counter()
        self._on_in_flight = on_in_flight or (lambda lang, count: None)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url, api_key=settings.api_key, max_retries=0, timeout=settings.timeout
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_WAIT_S) + random.uniform(0, 0.1 * self.settings.backoff)
        return min(self.settings.backoff * 2**attempt, MAX_WAIT_S) * random.uniform(0.5, 1.0)

    async def complete(self, system: str, text: str, lang: str) -> str:
        """The answer's text (may be empty or garbage: the checks judge it)."""
        last = "no attempt"
        for attempt in range(self.settings.retries + 1):
            async with self._slots:
                if self.settings.max_requests is not None and self.usage.requests >= self.settings.max_requests:
                    raise BudgetSpent(f"--max-requests {self.settings.max_requests} reached")
                self.usage.requests += 1
                self.usage.retried += attempt > 0
                self._track(lang, +1)
                try:
                    # The client's raw request path: its errors, auth and connection pool, without its
                    # typed request/response models, which cost more CPU per request than all our checks.
                    body = await self._client.post("/chat/completions", cast_to=str, body={
                        "model": self.settings.model, "temperature": self.settings.temperature,
                        "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
                    })
                    return self._answer(body)
                except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
                    raise EndpointError(self._fatal_message(err)) from err
                except (openai.BadRequestError, openai.UnprocessableEntityError) as err:
                    raise RequestFailed("bad_request", f"{_describe(err)}: {err.message}") from err
                except (openai.APIStatusError, openai.APIConnectionError) as err:
                    wait = self._backoff(attempt, retry_after_seconds(getattr(err, "response", None) and err.response.headers))
                    self.usage.errors[_describe(err)] += 1
                    last = f"{_describe(err)}: {err}"
                finally:
                    self._track(lang, -1)
            logger.debug("retrying in %.2f s after %s", wait, last)
            await asyncio.sleep(wait)
        raise RequestFailed("api_error", f"{self.settings.retries + 1} attempts failed; last: {last}")

    def _answer(self, body: str) -> str:
        """The chat answer's text from a response body; anything else is a malformed response."""
        try:
            data = json.loads(body)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise RequestFailed("malformed_response", f"no chat answer in the reply ({type(err).__name__}): "
                                f"{body[:200]!r}") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        for name in ("prompt_tokens", "completion_tokens"):
            if isinstance(usage.get(name), int):
                setattr(self.usage, name, getattr(self.usage, name) + usage[name])
        if not isinstance(content, str):
            raise RequestFailed("malformed_response", f"the answer is {type(content).__name__}, not text")
        return content

    def _track(self, lang: str, delta: int) -> None:
        self.in_flight[lang] += delta
        self._on_in_flight(lang, self.in_flight[lang])

    def _fatal_message(self, err: openai.APIStatusError) -> str:
        s = self.settings
        if err.status_code in (401, 403):
            return f"{s.base_url} refused the key from {s.key_source} (HTTP {err.status_code}); set the right key"
        return f"{s.base_url} has no model {s.model!r} (HTTP 404); pass one it serves with --model"

    async def aclose(self) -> None:
        await self._client.close()


def check_endpoint(settings: ClientSettings) -> None:
    """Before any translation request: the server answers, accepts the key and serves the model."""
    client = openai.OpenAI(base_url=settings.base_url, api_key=settings.api_key, max_retries=0,
                           timeout=min(settings.timeout, 15.0))
    try:
        served = [model.id for model in client.models.list()]
    except openai.APIConnectionError as err:
        raise EndpointError(
            f"--base-url {settings.base_url}: unreachable ({err.__cause__ or err}); start the server or fix the URL"
        ) from None
    except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
        raise EndpointError(
            f"{settings.base_url} refused the key from {settings.key_source} (HTTP {err.status_code}); "
            "set the right key, or name another variable with --api-key-env"
        ) from None
    except openai.NotFoundError:
        logger.warning("%s lists no models (no /models route); --model %s is not checked", settings.base_url, settings.model)
        return
    except openai.APIStatusError as err:
        raise EndpointError(
            f"--base-url {settings.base_url}: GET /models answered HTTP {err.status_code}; is it an OpenAI-compatible "
            "endpoint (usually ending in /v1)?"
        ) from None
    finally:
        client.close()
    if served and settings.model not in served:
        raise EndpointError(f"--model {settings.model}: {settings.base_url} serves {', '.join(served[:20])}; pass one of them")
