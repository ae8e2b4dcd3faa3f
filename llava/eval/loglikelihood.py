"""The log-probability of a continuation given a user message (and an optional image), through the
model's own forward: the image spliced in and the projector's text guidance taken from the prompt
tokens only (the continuation is labelled, as answers are in training)."""

from __future__ import annotations

import torch
from PIL import Image

from llava.constants import DEFAULT_IMAGE_TOKEN, IGNORE_INDEX
from llava.inference import build_prompt
from llava.mm_utils import process_images, tokenizer_image_token


def continuation_ids(tokenizer, prompt: str, continuation: str) -> tuple[list[int], int]:
    """Token ids of `prompt + continuation` and how many of them are the prompt's.

    The whole string is tokenized once and split where the prompt alone ends (as lm-eval does), so
    the continuation is scored in the tokens the model would read. Raises ValueError for an empty
    continuation (nothing to score)."""
    whole = tokenizer_image_token(prompt + continuation, tokenizer)
    context = len(tokenizer_image_token(prompt, tokenizer))
    if len(whole) <= context:
        raise ValueError(f"loglikelihood: the continuation {continuation!r} adds no token to its context")
    return whole, context


@torch.no_grad()
def continuation_logprob(
    model, tokenizer, image_processor, message: str, continuation: str, image: Image.Image | None
) -> tuple[float, bool]:
    """(sum of log P(continuation tokens), whether greedy decoding would produce exactly them).

    `message` is the user turn: it is rendered in the model's chat template (an `<image>` typed in it
    is dropped and the image placed first, as the serving engine does) and the continuation follows
    the assistant's header."""
    message = message.replace(DEFAULT_IMAGE_TOKEN, "").strip()
    prompt = build_prompt(model, message, image is not None)
    ids, context = continuation_ids(tokenizer, prompt, continuation)
    device = model.device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    labels = input_ids.clone()
    labels[:, :context] = IGNORE_INDEX
    pixels = None
    if image is not None:
        pixels = process_images([image], image_processor, model.config).to(device, model.dtype)
    merged = model.prepare_inputs_embeds(input_ids, pixels, torch.ones_like(input_ids), labels)
    logits = model.language_model(
        inputs_embeds=merged.inputs_embeds,
        attention_mask=merged.attention_mask,
        position_ids=merged.position_ids,
        use_cache=False,
    ).logits[0].float()
    targets = merged.labels[0]
    # The token at position t is predicted by the logits at t - 1.
    supervised = (targets[1:] != IGNORE_INDEX).nonzero().squeeze(1)
    if len(supervised) != len(ids) - context:
        raise ValueError(
            f"loglikelihood: the prompt and continuation exceed the model's {model.config.tokenizer_model_max_length} "
            "tokens (tokenizer_model_max_length in its config.json); shorten the context"
        )
    predicted = logits[supervised].log_softmax(dim=-1)
    wanted = targets[1:][supervised]
    total = predicted.gather(1, wanted[:, None]).sum()
    greedy = bool((predicted.argmax(dim=-1) == wanted).all())
    return float(total), greedy
