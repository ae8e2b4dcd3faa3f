"""One tqdm bar per language: units done (with ETA), requests in flight, rejects so far."""

from __future__ import annotations

from tqdm import tqdm


class LanguageBars:
    def __init__(self, totals: dict[str, int], done: dict[str, int], rejects: dict[str, int], disable: bool = False):
        self.rejects = dict(rejects)
        self.in_flight = dict.fromkeys(totals, 0)
        self.bars = {
            lang: tqdm(total=total, initial=done[lang], desc=f"translate {lang}", unit="turn", position=position,
                       mininterval=0.5, dynamic_ncols=True, disable=disable, leave=True)
            for position, (lang, total) in enumerate(totals.items())
        }
        for lang in totals:
            self._postfix(lang)

    def _postfix(self, lang: str) -> None:
        self.bars[lang].set_postfix_str(f"in flight {self.in_flight[lang]}, rejects {self.rejects[lang]}", refresh=False)

    def set_in_flight(self, lang: str, count: int) -> None:
        self.in_flight[lang] = count
        self._postfix(lang)

    def finished(self, lang: str, rejected: bool) -> None:
        self.rejects[lang] += rejected
        self._postfix(lang)
        self.bars[lang].update(1)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
