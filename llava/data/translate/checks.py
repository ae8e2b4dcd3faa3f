"""Quality checks on every answer; each failure is a named reason that ends up in rejects.jsonl.

Reasons, in the order they are tried:
    empty            nothing came back
    protected_spans  a marker (code, URL, number, LaTeX, placeholder, option letter) was dropped,
                     repeated, invented or broken
    refusal          "I'm sorry, I cannot ..." in any of the tuned languages
    preamble         "Here is the translation:", "Translation:", "以下是翻译" ...
    turn_count       the answer holds dialogue turns ("User: ... Assistant: ...") the source lacks
    length_ratio     the answer is far shorter or longer than a translation of the source can be
    language         the answer is identifiably not in the target language
"""

from __future__ import annotations

import logging
import re
import resource
import time
from dataclasses import dataclass
from functools import cache

from llava.data.translate.languages import detector_codes, expected_length_ratio, lingua_language
from llava.data.translate.protect import MARKER, Segment, marker_problem
from llava.optional import require

logger = logging.getLogger(__name__)

_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|okay)\b[\s,!.:]"
    r"|here(?:'s| is| are) (?:the|your|my) translat"
    r"|(?:\w+ )?translation(?: (?:in|into|to) \w+)?\s*[:：]"
    r"|translated(?: text| version)?\s*[:：]"
    r"|(?:以下是|这是|下面是).{0,12}(?:翻译|译文)|(?:翻译|译文)[:：]"
    r"|(?:aqui está|segue) a tradução|tradução\s*:"
    r"|(?:вот )?перевод\s*:|вот перевод"
    r"|(?:işte )?çeviri(?:si)?\s*:"
    r"|(?:إليك|هذه) الترجمة|الترجمة\s*:)",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:I'm sorry|I am sorry|I cannot|I can't|I can not|I'm unable|I am unable|As an AI|as a language model)\b"
    r"|抱歉|对不起|我无法|我不能|Desculpe|Não posso|Извините|Я не могу|Üzgünüm|yapamam|عذراً|عذرا|لا أستطيع",
    re.IGNORECASE,
)
_ROLE_LINE = re.compile(r"^\s*(?:#+\s*)?(?:human|gpt|user|assistant|system)\s*[:：]", re.IGNORECASE | re.MULTILINE)
_QUOTES = {'"': '"', "“": "”", "«": "»", "「": "」", "'": "'"}

MIN_CHARS_FOR_LENGTH_RATIO = 20  # short strings ("Yes." -> "是。") vary too much to judge
MIN_LETTERS_FOR_TOP_LANGUAGE = 12  # shorter answers are rejected only when the target is implausible
LENGTH_RATIO_TOLERANCE = 3.0  # accepted: expected / 3 .. expected * 3
IMPLAUSIBLE = 0.05  # detector confidence in the target below which any answer is rejected
UNCONVINCING = 0.25  # ... below which an answer long enough to judge, whose top language differs, is


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


@cache
def load_detector(codes: tuple[str, ...]):
    """A lingua detector for just these languages, built once per process (the models are large)."""
    start, rss_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    builder = require("lingua").LanguageDetectorBuilder.from_languages(*[lingua_language(c) for c in codes])
    detector = builder.with_preloaded_language_models().build()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    logger.info("language detector for %s: loaded in %.1f s, peak memory +%.0f MB",
                ",".join(codes), time.perf_counter() - start, grown_mb)
    return detector


def normalize_answer(answer: str, source: str) -> str:
    """Strip surrounding whitespace, and quotes the model wrapped around an unquoted source."""
    text = answer.strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1] and not source.strip().startswith(text[0]):
        text = text[1:-1].strip()
    return text


def _visible(text: str) -> str:
    return MARKER.sub("", text).strip()


class QualityChecks:
    """Runs every check on one answer for one segment; `check` returns None when accepted."""

    def __init__(self, targets: list[str], source_lang: str):
        self.source_lang = source_lang
        self.detector = load_detector(tuple(detector_codes(targets, source_lang)))

    def check(self, segment: Segment, answer: str, target: str) -> Rejection | None:
        source = segment.core
        if not _visible(answer) and _visible(source):
            return Rejection("empty", "the answer is empty")
        problem = marker_problem(answer, len(segment.spans))
        if problem:
            return Rejection("protected_spans", problem)
        for reason, pattern in (("refusal", _REFUSAL), ("preamble", _PREAMBLE)):
            found = pattern.search(answer)
            if found and not pattern.search(source):
                return Rejection(reason, f"{found.group(0).strip()!r} in {answer[:80]!r}")
        roles_in, roles_out = len(_ROLE_LINE.findall(source)), len(_ROLE_LINE.findall(answer))
        if roles_out != roles_in:
            return Rejection("turn_count", f"{roles_out} dialogue-role lines in the answer, {roles_in} in the source")
        return self._length_problem(source, answer, target) or self._language_problem(answer, target)

    def _length_problem(self, source: str, answer: str, target: str) -> Rejection | None:
        source_chars = len(_visible(source))
        if source_chars < MIN_CHARS_FOR_LENGTH_RATIO:
            return None
        ratio = len(_visible(answer)) / source_chars
        expected = expected_length_ratio(target, self.source_lang)
        low, high = expected / LENGTH_RATIO_TOLERANCE, expected * LENGTH_RATIO_TOLERANCE
        if not low <= ratio <= high:
            return Rejection("length_ratio", f"{ratio:.2f} characters per source character, expected {low:.2f}..{high:.2f}")
        return None

    def _language_problem(self, answer: str, target: str) -> Rejection | None:
        text = _visible(answer)
        letters = sum(ch.isalpha() for ch in text)
        if letters == 0:
            return None
        values = self.detector.compute_language_confidence_values(text)
        confidence = {v.language.iso_code_639_1.name.lower(): v.value for v in values}
        top = max(confidence, key=confidence.get)
        own = confidence.get(target, 0.0)
        if own < IMPLAUSIBLE or (top != target and letters >= MIN_LETTERS_FOR_TOP_LANGUAGE and own < UNCONVINCING):
            return Rejection("language", f"identified as {top} ({confidence[top]:.2f}); {target} only {own:.2f}")
        return None
