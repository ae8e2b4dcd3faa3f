"""Translate the pending units: bounded workers, one request per distinct string, the journal.

A unit is one turn of one item in one language. Its text is split around `<image>`; every segment
with words in it is one request, shared by all units holding the same segment (the cache: an
in-flight request is awaited, a finished one, even from an earlier run, is reused). A segment's
answer is checked once; a rejected segment rejects its unit. With `retry_rejects`, a rejected
answer gets one more request with the stricter prompt, which names the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from llava.data.translate.checks import QualityChecks, Rejection, normalize_answer
from llava.data.translate.client import BudgetSpent, ChatTranslator, EndpointError, RequestFailed
from llava.data.translate.journal import Journal, text_hash
from llava.data.translate.languages import system_prompt
from llava.data.translate.progress import LanguageBars
from llava.data.translate.protect import Segment, join_turn, split_turn

logger = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class Unit:
    item: int
    turn: int
    lang: str
    source: str

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.item, self.turn, self.lang)

    @property
    def src(self) -> str:
        return text_hash(self.source)


@dataclass(frozen=True)
class Outcome:
    """One segment's normalised answer and the check's verdict (None = accepted)."""

    answer: str
    rejection: Rejection | None


def cache_key(lang: str, core: str, strict_reason: str | None) -> str:
    return text_hash(lang, strict_reason or "", core)


def plan_units(items: list[dict], langs: list[str]) -> Iterator[Unit]:
    """Every unit, item by item, so all language bars advance together (generated: 665K items x
    five languages are millions of units)."""
    for index, item in enumerate(items):
        for lang in langs:
            for turn, message in enumerate(item["conversations"]):
                yield Unit(index, turn, lang, str(message["value"]))


def recorded(journal: Journal, unit: Unit) -> dict | None:
    """The unit's journal record, unless its source text changed since."""
    record = journal.units.get(unit.key)
    return record if record is not None and record["src"] == unit.src else None


def _needs_run(record: dict | None, retry_rejects: bool) -> bool:
    return record is None or (retry_rejects and record["status"] == "reject")


def units_to_run(journal: Journal, items: list[dict], langs: list[str], retry_rejects: bool) -> Iterator[Unit]:
    return (unit for unit in plan_units(items, langs) if _needs_run(recorded(journal, unit), retry_rejects))


@dataclass
class Survey:
    """Per language: units in all, units still to run, rejects already final."""

    totals: Counter
    todo: Counter
    rejected: Counter


def survey_units(journal: Journal, items: list[dict], langs: list[str], retry_rejects: bool) -> Survey:
    survey = Survey(Counter(), Counter(), Counter())
    for unit in plan_units(items, langs):
        record = recorded(journal, unit)
        survey.totals[unit.lang] += 1
        if _needs_run(record, retry_rejects):
            survey.todo[unit.lang] += 1
        elif record["status"] == "reject":
            survey.rejected[unit.lang] += 1
    return survey


class TranslationRun:
    def __init__(self, journal: Journal, translator: ChatTranslator, checks: QualityChecks, source_lang: str,
                 retry_rejects: bool, workers: int):
        self.journal, self.translator, self.checks = journal, translator, checks
        self.source_lang, self.retry_rejects, self.workers = source_lang, retry_rejects, workers
        self.outcomes: dict[str, asyncio.Future] = {}
        self.stop_reason: str | None = None
        self.fatal = False
        self._consecutive_failures = 0

    async def run(self, units: Iterable[Unit], bars: LanguageBars) -> None:
        pending = iter(units)

        async def worker() -> None:
            for unit in pending:
                if self.stop_reason:
                    return
                try:
                    rejected = await self._unit(unit)
                except BudgetSpent as err:
                    self.stop_reason = str(err)
                    return
                except EndpointError as err:
                    self.stop_reason, self.fatal = str(err), True
                    return
                except RequestFailed as err:
                    self._failed(unit, err)
                    continue
                self._consecutive_failures = 0
                bars.finished(unit.lang, rejected)

        await asyncio.gather(*(worker() for _ in range(self.workers)))

    def _failed(self, unit: Unit, err: RequestFailed) -> None:
        self._consecutive_failures += 1
        logger.warning("item %d turn %d (%s) left for the next run: %s", unit.item, unit.turn, unit.lang, err)
        if self._consecutive_failures >= max(8, self.workers):
            self.stop_reason = f"the endpoint failed {self._consecutive_failures} units in a row (last: {err})"
            self.fatal = True

    async def _unit(self, unit: Unit) -> bool:
        """Translate one unit and journal it; True when it was rejected."""
        segments = split_turn(unit.source)
        answers: list[str | None] = []
        used: dict[str, list] = {}
        for segment in segments:
            if not segment.needs_translation:
                answers.append(None)
                continue
            outcome = await self._segment(segment, unit.lang, used)
            if outcome.rejection is not None:
                self._record(unit, {"status": "reject", "reason": outcome.rejection.reason,
                                    "detail": outcome.rejection.detail, "answer": outcome.answer}, used)
                return True
            answers.append(outcome.answer)
        self._record(unit, {"status": "ok", "value": join_turn(segments, answers)}, used)
        return False

    def _record(self, unit: Unit, result: dict, used: dict[str, list]) -> None:
        """Journal the unit, unless the journal already says exactly this (a reject retried from cache)."""
        record = {"kind": "unit", "unit": list(unit.key), "src": unit.src, **result}
        if recorded(self.journal, unit) != record:
            self.journal.append({**record, "cache": used})
        for key in used:  # now in the journal's cache: keep each answer in memory once
            self.outcomes.pop(key, None)

    async def _segment(self, segment: Segment, lang: str, used: dict[str, list]) -> Outcome:
        key = cache_key(lang, segment.core, None)
        outcome = await self._outcome(key, segment, lang, None)
        used[key] = [outcome.answer, *(astuple(outcome.rejection))]
        if outcome.rejection is not None and self.retry_rejects:
            reason = outcome.rejection.reason
            strict_key = cache_key(lang, segment.core, reason)
            outcome = await self._outcome(strict_key, segment, lang, reason)
            used[strict_key] = [outcome.answer, *(astuple(outcome.rejection))]
        return outcome

    async def _outcome(self, key: str, segment: Segment, lang: str, strict_reason: str | None) -> Outcome:
        if key in self.journal.cache:
            answer, reason, detail = self.journal.cache[key]
            return Outcome(answer, None if reason is None else Rejection(reason, detail))
        if key in self.outcomes:
            return await asyncio.shield(self.outcomes[key])
        future = asyncio.get_running_loop().create_future()
        self.outcomes[key] = future
        try:
            prompt = system_prompt(lang, self.source_lang, strict_reason)
            try:
                answer = normalize_answer(await self.translator.complete(prompt, segment.core, lang), segment.core)
                outcome = Outcome(answer, self.checks.check(segment, answer, lang))
            except RequestFailed as err:
                if not err.final:
                    raise
                outcome = Outcome("", Rejection(err.reason, err.detail))
        except BaseException as err:
            del self.outcomes[key]  # not cached: the next unit with this string asks again
            if isinstance(err, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(err)
                future.exception()  # marks it retrieved: units awaiting it still get the error
            raise
        future.set_result(outcome)
        return outcome


def astuple(rejection: Rejection | None) -> tuple[str | None, str]:
    return (None, "") if rejection is None else (rejection.reason, rejection.detail)
