"""Optional judge for answers the extraction rules cannot read.

A judge is any callable `judge(query: JudgeQuery) -> str | None` returning the chosen letter (or a
short reply that contains it; it is read with the same rules) or None. It is consulted only for
non-empty predictions where the rules give no answer. `load_judge(spec)` builds one from:

- `http://...` / `https://...`: an OpenAI-compatible chat-completions endpoint (a base URL such
  as `http://localhost:8000/v1`, or the full `.../chat/completions` URL). The API key, if any, is
  read from the environment variable named by `api_key_env` (default OPENAI_API_KEY).
- `package.module:function`: a Python callable with the signature above.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from llava.eval.languages import LANGUAGE_NAMES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeQuery:
    """What the judge sees for one row."""

    question: str
    options: dict[str, str]
    prediction: str
    language: str


Judge = Callable[[JudgeQuery], "str | None"]

JUDGE_INSTRUCTION = (
    "You grade a multiple-choice answer. Given the question, its options and a model's answer "
    "(written in {language}), reply with the single letter of the option the answer chooses. "
    "Reply Z if the answer chooses no option, several options, or refuses."
)


def build_judge_prompt(query: JudgeQuery) -> str:
    """User message sent to an endpoint judge."""
    options = "\n".join(f"{letter}. {text}" for letter, text in query.options.items())
    return f"Question: {query.question}\nOptions:\n{options}\nAnswer: {query.prediction}\nLetter:"


class EndpointJudge:
    """Judge backed by an OpenAI-compatible `/chat/completions` endpoint (stdlib HTTP only).

    After `max_failures` consecutive request failures it stops calling the endpoint, logs once,
    and returns None for the remaining rows so that a dead endpoint does not stall scoring.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str = "gpt-4o-mini",
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_failures: int = 3,
    ) -> None:
        self.url = (
            url if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/chat/completions"
        )
        self.model = model
        self.api_key = os.environ.get(api_key_env)
        self.timeout = timeout
        self.max_failures = max_failures
        self._failures = 0

    def __call__(self, query: JudgeQuery) -> str | None:
        if self._failures >= self.max_failures:
            return None
        language = LANGUAGE_NAMES.get(query.language, query.language)
        body = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": 8,
            "messages": [
                {"role": "system", "content": JUDGE_INSTRUCTION.format(language=language)},
                {"role": "user", "content": build_judge_prompt(query)},
            ],
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read().decode("utf-8"))
            content = reply["choices"][0]["message"]["content"]
        except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError, IndexError) as err:
            self._failures += 1
            logger.warning("judge %s failed (%s)", self.url, err)
            if self._failures >= self.max_failures:
                logger.error(
                    "judge %s failed %d times in a row; scoring goes on without it (rule-based only)",
                    self.url,
                    self._failures,
                )
            return None
        self._failures = 0
        return content if isinstance(content, str) else None


def load_judge(spec: str, *, model: str = "gpt-4o-mini", api_key_env: str = "OPENAI_API_KEY") -> Judge:
    """Build a judge from a URL or a `module:function` spec (see the module docstring)."""
    if spec.startswith(("http://", "https://")):
        return EndpointJudge(spec, model=model, api_key_env=api_key_env)
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(
            f"--judge {spec!r}: give an http(s) URL or a Python callable as package.module:function"
        )
    judge = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(judge):
        raise ValueError(f"--judge {spec!r}: {module_name} has no callable named {attribute!r}")
    return judge
