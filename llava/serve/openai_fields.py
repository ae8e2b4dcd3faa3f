"""The OpenAI request fields beyond the basics: `n`, `logprobs` / `top_logprobs`, the penalties,
`logit_bias` and vLLM's `repetition_penalty` / `skip_special_tokens`, each checked with a 400 that
names the field; and the per-sample seeds of `n` > 1."""

from __future__ import annotations

from dataclasses import replace

from llava.serve.inputs import BadInputError
from llava.serve.request import MAX_TOP_LOGPROBS, SamplingParams

MAX_N = 8  # samples of one request: they are decoded in one batch (at most --max-batch-size)
_SEED_STEP = 0x9E3779B97F4A7C15  # odd 64-bit constant: sample i's seed is seed + i * step (mod 2**63)


def _value(payload: dict, key: str, kinds: tuple, what: str):
    value = payload.get(key)
    if value is not None and (isinstance(value, bool) is not (bool in kinds) or not isinstance(value, kinds)):
        raise BadInputError(f"'{key}' must be {what}, got {value!r}")
    return value


def sample_count(payload: dict, limit: int) -> int:
    n = _value(payload, "n", (int,), "an integer")
    if n is None:
        return 1
    if not 1 <= n <= limit:
        raise BadInputError(f"'n' must be between 1 and {limit} (the samples are decoded in one batch), got {n}")
    return n


def _logit_bias(payload: dict, vocab: int) -> tuple[tuple[int, float], ...]:
    value = payload.get("logit_bias")
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise BadInputError(f"'logit_bias' must be an object of token id -> bias, got {value!r}")
    out = []
    for key, bias in value.items():
        if not str(key).isdigit() or int(key) >= vocab:
            raise BadInputError(f"'logit_bias' key {key!r} is not a token id of this model (0 to {vocab - 1})")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
            raise BadInputError(f"'logit_bias' value for {key} must be a number in [-100, 100], got {bias!r}")
        out.append((int(key), float(bias)))
    return tuple(out)


def extended_params(payload: dict, params: SamplingParams, vocab: int) -> SamplingParams:
    """`params` with the fields of this module read from `payload` (checked)."""
    logprobs = _value(payload, "logprobs", (bool,), "true or false") or False
    top = _value(payload, "top_logprobs", (int,), "an integer")
    if top is not None and not 0 <= top <= MAX_TOP_LOGPROBS:
        raise BadInputError(f"'top_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}, got {top}")
    if top and not logprobs:
        raise BadInputError("'top_logprobs' needs 'logprobs': true")
    number = (int, float)
    fields = {}
    for key, default, low, high in (("frequency_penalty", 0.0, -2, 2), ("presence_penalty", 0.0, -2, 2),
                                    ("repetition_penalty", 1.0, 0, 10)):
        value = _value(payload, key, number, "a number")
        value = default if value is None else float(value)
        if not (low <= value <= high) or (key == "repetition_penalty" and value <= 0):
            bounds = "greater than 0 and at most 10" if key == "repetition_penalty" else f"between {low} and {high}"
            raise BadInputError(f"'{key}' must be {bounds}, got {value!r}")
        fields[key] = value
    skip = _value(payload, "skip_special_tokens", (bool,), "true or false")
    return replace(
        params, logprobs=logprobs, top_logprobs=top or 0, logit_bias=_logit_bias(payload, vocab),
        skip_special_tokens=True if skip is None else skip, **fields,
    )


def sample_params(params: SamplingParams, n: int) -> list[SamplingParams]:
    """One SamplingParams per sample; sample 0 keeps the request's seed (so n = 1 is unchanged),
    sample i gets one derived from it. Without a seed each sample draws its own."""
    if params.seed is None:
        return [params] * n
    return [replace(params, seed=(params.seed + i * _SEED_STEP) % 2**63 if i else params.seed) for i in range(n)]
