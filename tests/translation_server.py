"""A deterministic OpenAI-compatible translation server on loopback, with faults on command.

Used by the translator's tests and by bench/translate_throughput.py. It serves `/v1/models` and
`/v1/chat/completions`: the target language is read from the system prompt's last line
("Target language: Chinese (zh)"), and the user message is translated piece by piece between
the ⟦n⟧ markers, line by line, with the easy-VQA table (every question, caption, answer word and
the letter instruction in six languages) plus any `phrases` given. Unknown text comes back as is.

    with TranslationServer(latency=0.2) as server:
        server.inject("429", match="What color", times=1)   # the next matching request gets a 429
        ... --base-url server.base_url ...
        server.requests                                      # every request, in arrival order
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from playground.easyvqa.translations import COLORS, LANGUAGES, SHAPES, load_table

FAULTS = ("429", "500", "stall", "drop", "wrong_language", "drop_placeholder", "preamble", "garbage")
MODEL = "fake-translator"
_TARGET = re.compile(r"Target language: .*\((\w+)\)\s*$")
_MARKER = re.compile(r"(⟦\d+⟧)")


def easyvqa_dictionary() -> dict[str, dict[str, str]]:
    """lang -> {lower-cased English string: translation} over everything the table renders."""
    table = load_table()
    dictionary: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    for lang in LANGUAGES:
        pairs = [(table.question(t, "en", c, s), table.question(t, lang, c, s))
                 for t in table.templates for c in COLORS for s in SHAPES]
        pairs += [(table.caption("en", c, s), table.caption(lang, c, s)) for c in COLORS for s in SHAPES]
        english = table.answer_vocabulary("en")
        pairs += [(english[key], word) for key, word in table.answer_vocabulary(lang).items()]
        pairs.append((table.letter_instruction("en"), table.letter_instruction(lang)))
        dictionary[lang].update({source.lower(): target for source, target in pairs})
    return dictionary


@dataclass
class Fault:
    kind: str
    match: str | None
    lang: str | None
    times: int | None  # None: every matching request

    def applies(self, text: str, lang: str) -> bool:
        return (self.match is None or self.match in text) and (self.lang is None or self.lang == lang) \
            and (self.times is None or self.times > 0)


@dataclass
class LoggedRequest:
    started: float
    lang: str | None
    text: str
    strict: bool
    fault: str | None = None
    finished: float | None = None


@dataclass
class TranslationServer:
    latency: float = 0.0
    retry_after: int = 1
    stall_s: float = 20.0
    api_key: str | None = None  # None: any key is accepted
    phrases: dict[str, dict[str, str]] = field(default_factory=dict)  # English (with markers) -> lang -> text
    requests: list[LoggedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self):
        self.dictionary = easyvqa_dictionary()
        for source, translations in self.phrases.items():
            for lang, text in translations.items():
                self.dictionary[lang][source.lower()] = text
        self._lock = threading.Lock()
        self.app = self._build_app()

    def inject(self, kind: str, match: str | None = None, lang: str | None = None, times: int | None = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULTS}")
        with self._lock:
            self.faults.append(Fault(kind, match, lang, times))

    def _take_fault(self, text: str, lang: str) -> str | None:
        with self._lock:
            for fault in self.faults:
                if fault.applies(text, lang):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault.kind
        return None

    def translate(self, text: str, lang: str) -> str:
        words = self.dictionary.get(lang, {})
        whole = words.get(text.strip().lower())
        if whole is not None:
            return whole
        out = []
        for piece in _MARKER.split(text):
            if _MARKER.fullmatch(piece):
                out.append(piece)
                continue
            lines = []
            for line in piece.split("\n"):
                core = line.strip()
                found = words.get(core.lower()) if core else None
                lines.append(line.replace(core, found, 1) if found is not None else line)
            out.append("\n".join(lines))
        return "".join(out)

    def _answer(self, fault: str | None, text: str, lang: str) -> str:
        if fault == "wrong_language":
            return text  # the English source, untranslated
        answer = self.translate(text, lang)
        if fault == "drop_placeholder":
            return _MARKER.sub("", answer, count=1)
        if fault == "preamble":
            return "Here is the translation: " + answer
        return answer

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models(request: Request):
            if not self._authorised(request):
                return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
            return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            if not self._authorised(request):
                return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
            body = await request.json()
            system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
            text = next(m["content"] for m in body["messages"] if m["role"] == "user")
            target = _TARGET.search(system)
            lang = target.group(1) if target else None
            entry = LoggedRequest(time.monotonic(), lang, text, strict="was rejected" in system)
            with self._lock:
                self.requests.append(entry)
            await asyncio.sleep(self.latency)
            entry.fault = fault = self._take_fault(text, lang)
            try:
                return await self._respond(fault, text, lang, body)
            finally:
                entry.finished = time.monotonic()

        return app

    async def _respond(self, fault: str | None, text: str, lang: str, body: dict):
        if fault == "429":
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, status_code=429,
                                headers={"Retry-After": str(self.retry_after)})
        if fault == "500":
            return JSONResponse({"error": {"message": "internal error"}}, status_code=500)
        if fault == "stall":
            await asyncio.sleep(self.stall_s)
        if fault == "drop":
            return StreamingResponse(_dropped_body(), media_type="application/json")
        if fault == "garbage":
            return Response(b"<html>502 proxy error</html> {", media_type="application/json")
        answer = self._answer(fault, text, lang)
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        return JSONResponse({  # a response object: FastAPI's encoder would cost more CPU than the translation
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model", MODEL),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(answer.split()),
                      "total_tokens": prompt_tokens + len(answer.split())},
        })

    def _authorised(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"

    def start(self) -> str:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="critical", lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake translation server did not start")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> TranslationServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


async def _dropped_body():
    yield b'{"id": "chatcmpl-test", "choices": ['
    raise ConnectionAbortedError("fault injection: connection dropped mid-response")


def easyvqa_items(count: int, seed: int = 0) -> list[dict]:
    """LLaVA items built from easy-VQA strings the server knows: a question and its answer word,
    then (every other item) a lettered multiple-choice question answered with a letter."""
    import random

    from playground.easyvqa.translations import format_mcq_prompt

    table, rng = load_table(), random.Random(seed)
    answers = list(table.answer_vocabulary("en").values())
    items = []
    for index in range(count):
        template, color, shape = rng.choice(table.templates), rng.choice(COLORS), rng.choice(SHAPES)
        turns = [("human", "<image>\n" + table.question(template, "en", color, shape)), ("gpt", rng.choice(answers))]
        if index % 2:
            options = rng.sample([table.answer(c, "en").lower() for c in COLORS], 3)
            question = table.question(table.template("color_what_generic"), "en")
            turns += [("human", format_mcq_prompt(table, question, options, "en")), ("gpt", rng.choice("ABC"))]
        items.append({"id": f"evqa{index}", "image": f"{index}.png",
                      "conversations": [{"from": role, "value": value} for role, value in turns]})
    return items


def write_items(path, items: list[dict]) -> None:
    import json

    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")


def read_json(path) -> list:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def run_translate(server: TranslationServer, input_path, out, *flags: str) -> int:
    """`python -m llava.data.translate` in this process (the language detector loads once); the exit code."""
    from llava.data.translate.cli import translate_main

    argv = [str(input_path), "--langs", "zh,pt", "--base-url", server.base_url, "--model", MODEL,
            "--out", str(out), "--backoff", "0.02", "--timeout", "2", "--no-progress", *flags]
    try:
        return translate_main(argv)
    except SystemExit as stop:
        return stop.code


if __name__ == "__main__":  # serve in its own process: `python tests/translation_server.py 0.2`
    import sys

    with TranslationServer(latency=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0) as server:
        print(server.base_url, flush=True)
        threading.Event().wait()
