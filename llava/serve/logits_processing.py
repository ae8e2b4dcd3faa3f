"""What happens to a batch's logits before a token is chosen: penalties, `logit_bias`, logprobs.

All of it is tensor operations on the whole batch: each row's settings are one column of a (B, 1)
tensor, and its token history one row of `TokenHistory`'s (B, V) tensors, so a row's adjusted
logits depend on its own settings and tokens only, never on its neighbours. Penalties follow vLLM:
`repetition_penalty` on every token of the prompt or the answer (positive logits divided, negative
ones multiplied), then `frequency_penalty` x count and `presence_penalty` subtracted for tokens in
the answer. `logit_bias` is added last.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llava.serve.request import GenerationRequest


class TokenHistory:
    """(B, V) counts of each row's answer tokens and a mask of its prompt tokens, kept in step with
    the batch's rows (`join`, `keep`, `add`); made only while a row of the batch has a penalty."""

    def __init__(self, counts: torch.Tensor, prompt: torch.Tensor):
        self.counts, self.prompt = counts, prompt

    @classmethod
    def for_rows(cls, rows: Sequence[GenerationRequest], vocab: int, device) -> TokenHistory:
        prompt = torch.zeros(len(rows), vocab, dtype=torch.bool, device=device)
        for i, row in enumerate(rows):  # once per request, at its admission
            ids = torch.tensor([t for t in row.prepared.input_ids if 0 <= t < vocab], dtype=torch.long, device=device)
            prompt[i, ids] = True
        return cls(torch.zeros(len(rows), vocab, device=device), prompt)

    def join(self, other: TokenHistory) -> TokenHistory:
        return TokenHistory(torch.cat([self.counts, other.counts]), torch.cat([self.prompt, other.prompt]))

    def keep(self, index: torch.Tensor) -> TokenHistory:
        return TokenHistory(self.counts[index], self.prompt[index])

    def add(self, tokens: torch.Tensor) -> None:
        self.counts[torch.arange(len(tokens), device=tokens.device), tokens] += 1


def _column(rows: Sequence[GenerationRequest], name: str, device) -> torch.Tensor:
    return torch.tensor([[float(getattr(row.params, name))] for row in rows], device=device)


def adjusted(logits: torch.Tensor, rows: Sequence[GenerationRequest], history: TokenHistory | None) -> torch.Tensor:
    """(B, V) float logits after each row's penalties and logit_bias (the input itself, not even
    converted to float, when no row has either)."""
    penalised = history is not None and any(row.params.penalised for row in rows)
    if not penalised and not any(row.params.logit_bias for row in rows):
        return logits
    logits = logits.float()
    if penalised:
        device = logits.device
        repetition = _column(rows, "repetition_penalty", device)
        seen = history.prompt | (history.counts > 0)
        logits = torch.where(seen, torch.where(logits > 0, logits / repetition, logits * repetition), logits)
        logits = logits - _column(rows, "frequency_penalty", device) * history.counts
        logits = logits - _column(rows, "presence_penalty", device) * (history.counts > 0)
    biased = [(i, token, bias) for i, row in enumerate(rows) for token, bias in row.params.logit_bias]
    if biased:
        at, tokens, biases = zip(*biased)
        index = (torch.tensor(at, device=logits.device), torch.tensor(tokens, device=logits.device))
        logits = logits.index_put(index, torch.tensor(biases, device=logits.device), accumulate=True)
    return logits


def logprobs_of(
    logits: torch.Tensor, rows: Sequence[GenerationRequest], chosen: torch.Tensor
) -> list[tuple[float, list[int], list[float]] | None]:
    """Per row: (the chosen token's log-probability, the top_logprobs ids, their log-probabilities)
    under `logits` (B, V), for rows that asked for logprobs; None for the others."""
    asked = [i for i, row in enumerate(rows) if row.params.logprobs]
    out: list = [None] * len(rows)
    if not asked:
        return out
    index = torch.tensor(asked, device=logits.device)
    logp = logits[index].float().log_softmax(dim=-1)
    picked = logp.gather(1, chosen[index][:, None])[:, 0].tolist()
    k = max(rows[i].params.top_logprobs for i in asked)
    top = logp.topk(k, dim=-1) if k else None
    for j, i in enumerate(asked):
        n = rows[i].params.top_logprobs
        ids = top.indices[j, :n].tolist() if top is not None else []
        values = top.values[j, :n].tolist() if top is not None else []
        out[i] = (picked[j], ids, values)
    return out


_FLOOR = -9999.0  # OpenAI's log-probability of an impossible token (JSON has no -inf)


def _token(tokenizer, token: int, logprob: float) -> dict:
    text = tokenizer.decode([token], skip_special_tokens=False)
    return {"token": text, "logprob": max(logprob, _FLOOR), "bytes": list(text.encode("utf-8"))}


def logprob_entry(tokenizer, token: int, found: tuple[float, list[int], list[float]]) -> dict:
    """One entry of OpenAI's `logprobs.content`: the token's text, log-probability, UTF-8 bytes and
    its `top_logprobs` alternatives."""
    logprob, ids, values = found
    entry = _token(tokenizer, token, logprob)
    entry["top_logprobs"] = [_token(tokenizer, i, v) for i, v in zip(ids, values)]
    return entry
