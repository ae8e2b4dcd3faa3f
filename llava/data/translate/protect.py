"""What the translator must never touch: `<image>` (never sent) and protected spans (masked).

A turn is split around `<image>` into segments; each segment's leading and trailing whitespace
stays on our side, and its code blocks, URLs, numbers, LaTeX, `{placeholders}`, markup tags and
option letters ("A.", "(B)") are replaced by numbered markers `⟦0⟧, ⟦1⟧, ...` before it is sent.
The answer must hold every marker exactly once (order may change with the grammar); restoring
puts the original spans back, and rejoining puts `<image>` back exactly where it was.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from llava.constants import DEFAULT_IMAGE_TOKEN

_SPAN_PATTERNS = [
    r"```.*?```",  # fenced code block
    r"`[^`\n]+`",  # inline code
    r"\$\$.+?\$\$",  # display LaTeX
    r"\$[^$\n]+\$",  # inline LaTeX
    r"\\\(.+?\\\)|\\\[.+?\\\]",  # \( ... \) and \[ ... \]
    r"\\begin\{(?P<env>\w+\*?)\}.*?\\end\{(?P=env)\}",  # LaTeX environments
    r"\\[A-Za-z]+(?:\{[^{}]*\})*",  # a bare LaTeX command such as \frac{a}{b}
    r"(?:https?://|www\.)[^\s<>\"]*[^\s<>\".,;:!?)\]]",  # URL, without trailing punctuation
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail address
    r"\{\{?[^{}\s]*\}?\}",  # {placeholder}, {{placeholder}}
    r"</?[A-Za-z][^<>\n]*>",  # markup tags such as <box> or </ref>
    r"\[\s*-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?)+\s*\]",  # coordinate lists [0.1, 0.2, 0.5, 0.9]
    r"^[ \t]*\(?[A-Z][.)](?=\s)",  # option letter at the start of a line: "A." "B)" "(C)"
    r"\([A-Z]\)",  # option letter inside a line: "(A)"
    r"\A[A-Z][.)]?\Z",  # a whole segment that is one option letter: the answer "B"
    r"\b\d+(?:[.,:/]\d+)*\b%?",  # numbers: 3, 3.14, 1,000, 12:30, 1/2, 50%
    r"[⟦⟧]",  # our own marker brackets, should the source contain them
]
_SPAN = re.compile("|".join(f"(?:{p})" for p in _SPAN_PATTERNS), re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"⟦(\d+)⟧")


def marker(index: int) -> str:
    return f"⟦{index}⟧"


@dataclass(frozen=True)
class Segment:
    """One stretch of a turn between `<image>` markers, ready to send as `core`."""

    lead: str
    core: str
    trail: str
    spans: tuple[str, ...]

    @property
    def needs_translation(self) -> bool:
        """False when nothing but markers, digits, punctuation and space is left to translate."""
        return any(ch.isalpha() for ch in MARKER.sub("", self.core))

    def restore(self, translated: str) -> str:
        """The translation with its spans put back and this segment's own whitespace around it."""
        core = MARKER.sub(lambda m: self.spans[int(m.group(1))], translated.strip())
        return self.lead + core + self.trail


def protect(text: str) -> tuple[str, tuple[str, ...]]:
    """Replace protected spans by markers: ("Pick ⟦0⟧ or ⟦1⟧", ("A.", "B."))."""
    spans: list[str] = []

    def replace(match: re.Match) -> str:
        spans.append(match.group(0))
        return marker(len(spans) - 1)

    return _SPAN.sub(replace, text), tuple(spans)


def split_turn(text: str) -> list[Segment]:
    """Segments of a turn: one more than its number of `<image>` markers (empty ones included)."""
    segments = []
    for piece in text.split(DEFAULT_IMAGE_TOKEN):
        core = piece.strip()
        start = piece.find(core) if core else len(piece)
        lead, trail = piece[:start], piece[start + len(core):]
        masked, spans = protect(core)
        segments.append(Segment(lead=lead, core=masked, trail=trail, spans=spans))
    return segments


def join_turn(segments: list[Segment], translations: list[str | None]) -> str:
    """Rejoin restored segments with `<image>` between them; None keeps a segment unsent (as is)."""
    parts = []
    for segment, translated in zip(segments, translations, strict=True):
        parts.append(segment.restore(segment.core if translated is None else translated))
    return DEFAULT_IMAGE_TOKEN.join(parts)


def marker_problem(translated: str, num_spans: int) -> str | None:
    """Why the markers of an answer do not match the request, or None when each appears once."""
    counts = Counter(int(m) for m in MARKER.findall(translated))
    missing = [marker(i) for i in range(num_spans) if counts[i] == 0]
    repeated = [marker(i) for i in range(num_spans) if counts[i] > 1]
    unknown = [marker(i) for i in counts if i >= num_spans]
    stray = MARKER.sub("", translated)
    problems = []
    if missing:
        problems.append(f"missing {' '.join(missing)}")
    if repeated:
        problems.append(f"repeated {' '.join(repeated)}")
    if unknown:
        problems.append(f"unknown {' '.join(unknown)}")
    if "⟦" in stray or "⟧" in stray:
        problems.append("a broken marker")
    return "; ".join(problems) or None
