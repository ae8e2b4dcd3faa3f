"""`AnswerText`: the text of one answer as it grows token by token, with its stop strings.

Decoding is incremental: each new token costs the decoding of the few tokens since the last
complete character, not of the whole answer. Decoding the new tokens together with the ones before
them and keeping only the difference gets word boundaries right for tokenizers whose tokens carry
their leading space (SentencePiece's "▁"), and a token that ends halfway through a UTF-8 character
waits for the rest of it.

What is shown is the answer cut at the first stop string, stripped of surrounding whitespace, and
without a stop string's beginning at its end (it may be the start of the stop string itself), so a
stream never shows text that the final answer does not have.
"""

from __future__ import annotations

from collections.abc import Sequence

_INCOMPLETE = "\ufffd"  # what decoding gives for a token that ends inside a UTF-8 character


def special_token_ids(tokenizer) -> frozenset[int]:
    """The ids `decode(..., skip_special_tokens=True)` leaves out: the named special tokens and
    added tokens marked special (`<|im_end|>`, `<|endoftext|>`, ...)."""
    ids = set(getattr(tokenizer, "all_special_ids", []))
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids.update(i for i, token in decoder.items() if getattr(token, "special", False))
    return frozenset(ids)


class AnswerText:
    """`skip_special`: ids left out of the text (a special token whose text is a stop string still stops)."""

    def __init__(self, tokenizer, stops: Sequence[str], skip_special: frozenset[int] = frozenset()):
        self.tokenizer = tokenizer
        self.skip_special = skip_special
        self.stops = [stop for stop in stops if stop]
        self.ids: list[int] = []
        self.raw = ""  # every token decoded so far
        self.shown = ""  # the visible text handed out so far
        self.stop_at: int | None = None  # where the first stop string begins in `raw`
        self._prefix = self._read = 0  # ids[_prefix:_read] decode to the end of `raw`

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def add(self, token_id: int) -> bool:
        """Append a token; True once the answer contains a stop string."""
        if token_id in self.skip_special:
            if self.stop_at is None and self._decode([token_id]) in self.stops:
                self.stop_at = len(self.raw)
            return self.stop_at is not None
        self.ids.append(token_id)
        before = len(self.raw)
        known = self._decode(self.ids[self._prefix : self._read])
        extended = self._decode(self.ids[self._prefix :])
        if len(extended) > len(known) and not extended.endswith(_INCOMPLETE):
            self.raw += extended[len(known) :]
            self._prefix, self._read = self._read, len(self.ids)
        if self.stop_at is None:
            self._find_stop(before)
        return self.stop_at is not None

    def _find_stop(self, new_from: int) -> None:
        """Look for stop strings that end in the text added at `new_from` or later."""
        hits = []
        for stop in self.stops:
            at = self.raw.find(stop, max(0, new_from - len(stop) + 1))
            if at >= 0:
                hits.append(at)
        if hits:
            self.stop_at = min(hits)

    def _held_back(self) -> int:
        """Characters at the end of `raw` that could be the beginning of a stop string."""
        for k in range(max((len(stop) for stop in self.stops), default=1) - 1, 0, -1):
            if any(len(stop) > k and self.raw.endswith(stop[:k]) for stop in self.stops):
                return k
        return 0

    def visible_delta(self) -> str:
        """The visible text added since the last call ('' when nothing new can be shown yet)."""
        if self.stop_at is not None:
            visible = self.raw[: self.stop_at].strip()
        else:
            visible = self.raw[: len(self.raw) - self._held_back()].strip()
        if len(visible) > len(self.shown) and visible.startswith(self.shown):
            delta, self.shown = visible[len(self.shown) :], visible
            return delta
        return ""

    def final(self) -> str:
        """The whole answer: cut at the first stop string, stripped (a trailing partial character kept)."""
        if self.stop_at is not None:
            return self.raw[: self.stop_at].strip()
        tail = self._decode(self.ids[self._prefix :])[len(self._decode(self.ids[self._prefix : self._read])) :]
        return (self.raw + tail).strip()
