"""Batched multimodal generation shared by the CLI, the demo, the API and evaluation."""

from __future__ import annotations

import torch
from PIL import Image
from transformers import StoppingCriteria, StoppingCriteriaList

from llava.constants import DEFAULT_IMAGE_TOKEN
from llava.conversation import Conversation, get_conv_template
from llava.mm_utils import process_images, tokenizer_image_token


def conversation_for(model) -> Conversation:
    """The template the model was fine-tuned with (saved in its config), ChatML by default."""
    return get_conv_template(getattr(model.config, "conv_template", None) or "chatml")


def build_prompt(model, message: str, has_image: bool, history: list[tuple[str, str]] | None = None) -> str:
    """One user message (plus earlier (user, assistant) turns) in the model's chat template."""
    conv = conversation_for(model)
    for user, assistant in history or []:
        conv.append_message(conv.roles[0], user)
        conv.append_message(conv.roles[1], assistant)
    if has_image and DEFAULT_IMAGE_TOKEN not in message and not any(DEFAULT_IMAGE_TOKEN in u for u, _ in history or []):
        message = f"{DEFAULT_IMAGE_TOKEN}\n{message}"
    conv.append_message(conv.roles[0], message)
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


class StopOnText(StoppingCriteria):
    """Stops each sequence once the text it generated contains `stop_str`.

    Only generated tokens are inspected: on its first call (one new token per row) the criterion
    records where generation began, whether `generate` was given the prompt ids (text-only) or only
    embeddings (with images), so a stop string inside the prompt never ends generation. A stop
    string that is one token (`<|im_end|>`, `</s>` in LLaMA vocabularies) is matched by id, which
    costs nothing per row; others are matched on the decoded tail.
    """

    def __init__(self, tokenizer, stop_str: str):
        self.tokenizer, self.stop_str = tokenizer, stop_str
        ids = tokenizer(stop_str, add_special_tokens=False)["input_ids"] if stop_str else []
        self.stop_id = ids[0] if len(ids) == 1 else None
        self.start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        if self.start is None:
            self.start = input_ids.shape[1] - 1
        if self.stop_id is not None:
            return (input_ids[:, self.start :] == self.stop_id).any(dim=1)
        tails = self.tokenizer.batch_decode(input_ids[:, max(self.start, input_ids.shape[1] - 8) :])
        return torch.tensor([self.stop_str in t for t in tails], device=input_ids.device)


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and attention mask, padded on the left for batched generation."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return ids, mask


def generation_inputs(model, tokenizer, image_processor, prompts: list[str], images: list[Image.Image | None]):
    """Tokenized, left-padded prompts and the pixel values of the images they reference."""
    sequences = [tokenizer_image_token(p, tokenizer) for p in prompts]
    ids, mask = left_pad(sequences, tokenizer.pad_token_id)
    present = [img for img in images if img is not None]
    pixels = process_images(present, image_processor, model.config) if present else None
    device = model.device
    return ids.to(device), mask.to(device), None if pixels is None else pixels.to(device, model.dtype)


def strip_stop(text: str, stop_str: str, tokenizer=None) -> str:
    """Cut at the template's stop string and drop trailing pad/eos tokens of finished rows."""
    text = text.split(stop_str)[0] if stop_str else text
    for token in {getattr(tokenizer, "pad_token", None), getattr(tokenizer, "eos_token", None)} - {None}:
        text = text.split(token)[0]
    return text.strip()


def generate_batch(
    model,
    tokenizer,
    image_processor,
    prompts: list[str],
    images: list[Image.Image | None],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float | None = None,
    streamer=None,
) -> list[str]:
    """Answers to user messages (each with an optional image), generated in one left-padded batch."""
    conv = conversation_for(model)
    full_prompts = [build_prompt(model, p, img is not None) for p, img in zip(prompts, images)]
    ids, mask, pixels = generation_inputs(model, tokenizer, image_processor, full_prompts, images)
    sampling = temperature > 0
    output = model.generate(
        ids,
        images=pixels,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else None,
        top_p=top_p if sampling else None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
        stopping_criteria=StoppingCriteriaList([StopOnText(tokenizer, conv.stop_str)]),
        streamer=streamer,
    )
    return [strip_stop(t, conv.stop_str, tokenizer) for t in tokenizer.batch_decode(output, skip_special_tokens=False)]
