"""`DecodeBatch`: the requests decoded together, one token each per step, on the LLM's KV cache.

The decode loop is written on the LLM's own forward rather than `generate`, so that the batch can
change between any two steps:
- `admit` prefills new requests together (left-padded; images and the projector's text guidance are
  per sample, see `LlavaForCausalLM.prefill_inputs`), chooses their first tokens, and joins their
  KV cache to the running one (`kv_cache.join_rows`);
- `step` runs every row's newest token through the model and chooses the next one per row;
- `retire` removes rows that finished or were cancelled, and the padding nobody needs any more.

Every row keeps its own positions (counted over its real tokens only) and its own attention-mask
row, so a request decodes the same tokens alone or in any batch, up to float rounding.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Sequence

import torch
from transformers import DynamicCache

from llava.inference import left_pad
from llava.model.multimodal_projector import ROUTING_METRIC
from llava.serve import kv_cache
from llava.serve.logits_processing import TokenHistory, adjusted, logprob_entry, logprobs_of
from llava.serve.output_layout import OutputProjection
from llava.serve.request import GenerationCancelled, GenerationRequest
from llava.serve.sampling import next_tokens

logger = logging.getLogger(__name__)


def _cache_argument(llm) -> str:
    """The name of the LLM forward's KV-cache argument: `cache` since transformers 5.24 (which warns
    about the old name), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(llm.forward).parameters else "past_key_values"


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) attention mask -> (B, T) position ids counted over the real (mask 1) tokens."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


class DecodeBatch:
    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.llm = model.language_model
        self._cache_kwarg = _cache_argument(self.llm)
        # On the CPU the output layer reads a column-major copy of its weight (`output_layout`).
        self._projection = OutputProjection.for_llm(self.llm)
        self.rows: list[GenerationRequest] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # (B, T) long: 1 where the cache holds a row's token
        self._last: torch.Tensor | None = None  # (B,) the token each row chose last, not yet in the cache
        self._history: TokenHistory | None = None  # while a row has a penalty (`logits_processing`)
        self.joins_running_rows = kv_cache.supports_joining(DynamicCache(config=self.llm.config))
        if not self.joins_running_rows:
            logger.warning(
                "%s uses sliding-window or other non-full-attention cache layers: new requests wait until "
                "the running batch has finished (batching without joining)", type(self.llm).__name__
            )

    def __len__(self) -> int:
        return len(self.rows)

    def room(self, max_rows: int) -> int:
        """How many requests may join now."""
        if self.rows and not self.joins_running_rows:
            return 0
        return max(max_rows - len(self.rows), 0)

    @torch.no_grad()
    def admit(self, joining: Sequence[GenerationRequest]) -> None:
        """Prefill `joining` together, choose each one's first token and add them to the batch."""
        device = self.model.device
        ids, mask = left_pad([list(row.prepared.input_ids) for row in joining], self.tokenizer.pad_token_id)
        pixels = [row.prepared.pixel_values for row in joining if row.prepared.pixel_values is not None]
        pixels = torch.cat(pixels).to(device, self.model.dtype) if pixels else None
        inputs, projected = self.model.prefill_inputs(ids.to(device), pixels, mask.to(device))
        mask = inputs["attention_mask"]
        cache = DynamicCache(config=self.llm.config)
        with self._output_layer():
            out = self.llm(**inputs, position_ids=_positions(mask), use_cache=True, logits_to_keep=1, **{self._cache_kwarg: cache})
        if projected is not None and ROUTING_METRIC in projected.metrics:
            routing = iter(projected.metrics[ROUTING_METRIC].float().tolist())  # one row per image, in order
            for row in joining:
                if row.prepared.image is not None:
                    row.result.routing = next(routing)
        logits = out.logits[:, -1]
        history = self._history_for(joining, logits)
        tokens, found = self._choose(logits, joining, history)
        try:
            self._join(list(joining), cache, mask, tokens, history)
        except BaseException as err:  # half-joined: the running rows' cache is no longer theirs
            self.fail(err)
            raise
        self._accept(joining, tokens, found)

    def _output_layer(self):
        return self._projection.installed() if self._projection is not None else contextlib.nullcontext()

    def _history_for(self, joining: Sequence[GenerationRequest], logits: torch.Tensor) -> TokenHistory | None:
        """The joining rows' token history, when they or the running rows need one."""
        if self._history is None and not any(row.params.penalised for row in joining):
            return None
        return TokenHistory.for_rows(joining, logits.shape[-1], logits.device)

    def _choose(self, logits: torch.Tensor, rows: Sequence[GenerationRequest], history: TokenHistory | None):
        """(token ids, logprobs per row) chosen from `logits` after penalties and logit_bias."""
        logits = adjusted(logits, rows, history)
        tokens = next_tokens(logits, rows)
        chosen = torch.tensor(tokens, dtype=torch.long, device=logits.device)
        if history is not None:
            history.add(chosen)
        return tokens, logprobs_of(logits, rows, chosen)

    def _accept(self, rows: Sequence[GenerationRequest], tokens: list[int], found: list) -> None:
        for row, token, lp in zip(rows, tokens, found):
            row.accept(token, None if lp is None else logprob_entry(self.tokenizer, token, lp))

    def _join(
        self, rows: list[GenerationRequest], cache: DynamicCache, mask: torch.Tensor, tokens: list[int],
        history: TokenHistory | None,
    ) -> None:
        last = torch.tensor(tokens, dtype=torch.long, device=mask.device)
        if not self.rows:
            self.rows, self._cache, self._mask, self._last, self._history = rows, cache, mask, last, history
            return
        if history is not None:
            if self._history is None:  # the running rows have no penalty: their counts are never read
                self._history = TokenHistory.for_rows(self.rows, history.counts.shape[1], history.counts.device)
            self._history = self._history.join(history)
        width = max(self._mask.shape[1], mask.shape[1])
        pad = torch.nn.functional.pad
        self._mask = torch.cat([pad(self._mask, (width - self._mask.shape[1], 0)), pad(mask, (width - mask.shape[1], 0))])
        self._cache = kv_cache.join_rows(self._cache, cache)
        self._last = torch.cat([self._last, last])
        self.rows += rows

    @torch.no_grad()
    def step(self) -> None:
        """Run every row's newest token through the model and choose each row's next token."""
        mask = torch.cat([self._mask, self._mask.new_ones(len(self.rows), 1)], dim=1)
        with self._output_layer():
            out = self.llm(
                input_ids=self._last[:, None],
                attention_mask=mask,
                position_ids=mask.sum(dim=1, keepdim=True) - 1,
                use_cache=True,
                **{self._cache_kwarg: self._cache},
            )
        self._mask = mask
        tokens, found = self._choose(out.logits[:, -1], self.rows, self._history)
        self._last = torch.tensor(tokens, dtype=torch.long, device=mask.device)
        self._accept(self.rows, tokens, found)

    def retire(self, closing: bool = False) -> None:
        """Remove finished rows and cancelled ones (every row when `closing`), and the leading padding
        that no remaining row needs."""
        for row in self.rows:
            if not row.finished and (closing or row.cancel.is_set()):
                row.fail(GenerationCancelled("the server is shutting down" if closing else "the request was cancelled"))
        keep = [i for i, row in enumerate(self.rows) if not row.finished]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.clear()
            return
        index = torch.tensor(keep, device=self._mask.device)
        kv_cache.keep_rows(self._cache, index)
        self.rows = [self.rows[i] for i in keep]
        mask, self._last = self._mask[index], self._last[index]
        if self._history is not None:
            self._history = self._history.keep(index) if any(row.params.penalised for row in self.rows) else None
        unused = int(mask.any(dim=0).long().argmax())  # leading columns that are padding in every row
        kv_cache.drop_leading_columns(self._cache, unused)
        self._mask = mask[:, unused:]

    def fail(self, error: BaseException) -> None:
        """End every row with `error` and drop the batch (after a failed forward)."""
        for row in self.rows:
            if not row.finished:
                row.fail(error)
        self.clear()

    def clear(self) -> None:
        self.rows, self._cache, self._mask, self._last, self._history = [], None, None, None, None
