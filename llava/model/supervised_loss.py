"""Causal-LM loss computed from the output layer at supervised positions only.

In visual instruction tuning most of a sequence is unsupervised: the image tokens, the system
prompt and the question all carry IGNORE_INDEX. The bare `AutoModelForCausalLM` still projects
every position onto the vocabulary before the loss masks them out, which for a large vocabulary
is most of the step: (tokens x vocab) logits, their softmax, and the same again in the backward.
Here the decoder runs as usual and only the hidden states that predict a supervised label go
through the output layer. The loss is the same number as transformers' `ForCausalLMLoss`
(shift by one, ignore IGNORE_INDEX, mean over supervised tokens, or sum / `num_items_in_batch`
under gradient accumulation); `tests/test_supervised_loss.py` checks value and gradients.

It applies only where the LLM's logits are exactly `lm_head(decoder(...))`. Backbones that scale or
soft-cap their logits (Gemma-2's `final_logit_softcapping`, Cohere's `logit_scale`, Granite's
`logits_scaling`) keep the full path, decided from their config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llava.constants import IGNORE_INDEX

# Config fields that change logits after the output layer, with the value at which they are a no-op.
_LOGIT_TRANSFORMS = {"final_logit_softcapping": None, "logit_scale": None, "logits_scaling": 1.0}


def supports_supervised_loss(language_model: nn.Module) -> bool:
    """True when the LLM's logits are `get_output_embeddings()(get_decoder()(...).last_hidden_state)`."""
    config = getattr(language_model, "config", None)
    if config is None or not hasattr(language_model, "get_decoder"):
        return False
    if language_model.get_output_embeddings() is None:
        return False
    for name, neutral in _LOGIT_TRANSFORMS.items():
        value = getattr(config, name, neutral)
        if value is not None and value != neutral:
            return False
    return True


def supervised_causal_lm_loss(
    language_model: nn.Module,
    inputs_embeds: torch.Tensor | None,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    **decoder_kwargs,
) -> torch.Tensor:
    """Next-token cross-entropy of `labels`, projecting only the positions that predict a label."""
    decoder = language_model.get_decoder()
    hidden = decoder(
        input_ids=input_ids,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
        **decoder_kwargs,
    ).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = language_model.get_output_embeddings()(hidden[:, :-1][keep]).float()
    loss = F.cross_entropy(logits, targets[keep], reduction="sum")
    if num_items_in_batch is None:
        # A batch with nothing supervised gives 0 (and zero gradients) rather than 0/0.
        return loss / keep.sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch
