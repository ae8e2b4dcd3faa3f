"""lmms-eval's per-task generation settings (`gen_kwargs`) read into `generate_batch`'s arguments:
every key either works or is refused, never ignored."""

from __future__ import annotations

from dataclasses import dataclass

from llava.generation_defaults import GENERATION_DEFAULTS


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int
    temperature: float
    top_p: float | None
    stop: tuple[str, ...]

    def as_kwargs(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p, "stop": self.stop}


SUPPORTED = ("until", "max_new_tokens", "temperature", "top_p", "do_sample", "num_beams")


def read_gen_kwargs(gen_kwargs: dict | None, task: str) -> Decoding:
    """`until` (a string or a list) ends the answer, `max_new_tokens` (default
    GENERATION_DEFAULTS.max_new_tokens), `temperature` (default 0: greedy), `top_p`, `do_sample`
    (False means greedy whatever the temperature, as in transformers; True without a temperature
    samples at 1.0), `num_beams` (1 only). Any other key raises ValueError naming the task and key."""
    kwargs = dict(gen_kwargs or {})
    unknown = sorted(set(kwargs) - set(SUPPORTED))
    if unknown:
        raise ValueError(
            f"parrot_llava (lmms-eval), task {task}: generation_kwargs {unknown} are not supported "
            f"(supported: {', '.join(SUPPORTED)}); remove them from the task's generation_kwargs or --gen_kwargs"
        )
    if int(kwargs.get("num_beams", 1) or 1) != 1:
        raise ValueError(
            f"parrot_llava (lmms-eval), task {task}: num_beams={kwargs['num_beams']} is not supported "
            "(the serving engine decodes greedily or by sampling); use num_beams=1"
        )
    until = kwargs.get("until") or ()
    if isinstance(until, str):
        until = (until,)
    if not isinstance(until, (list, tuple)) or not all(isinstance(s, str) for s in until):
        raise ValueError(f"parrot_llava (lmms-eval), task {task}: until={until!r} must be a string or a list of strings")
    do_sample = kwargs.get("do_sample")
    temperature = kwargs.get("temperature")
    if do_sample is False:
        temperature = 0.0
    elif do_sample is True:
        temperature = 1.0 if temperature is None else float(temperature)
        if temperature <= 0:
            raise ValueError(
                f"parrot_llava (lmms-eval), task {task}: do_sample=True with temperature={temperature}; "
                "set a temperature above 0 to sample, or do_sample=False for greedy answers"
            )
    temperature = 0.0 if temperature is None else float(temperature)
    max_new_tokens = int(kwargs.get("max_new_tokens") or GENERATION_DEFAULTS.max_new_tokens)
    top_p = kwargs.get("top_p")
    return Decoding(max_new_tokens, temperature, None if top_p is None else float(top_p), tuple(until))
