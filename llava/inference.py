"""Prompt building shared by the CLI, the demo, the API and evaluation, and `generate_batch`, the
batched answers of evaluation, decoded by the serving engine."""

from __future__ import annotations

import torch
from PIL import Image

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


_last_engine: list = []  # [(model, tokenizer, image_processor), ChatEngine]: the engine of the last call


def _engine_for(model, tokenizer, image_processor, rows: int):
    """The `ChatEngine` over this model, tokenizer and processor with room for at least `rows`
    requests. The last one made is kept (outside the model, which stays copyable), so the calls of
    an evaluation reuse it; it is remade for another model or a larger batch."""
    from llava.serve.engine import ChatEngine

    if _last_engine:
        (m, t, p), engine = _last_engine
        if m is model and t is tokenizer and p is image_processor and engine.max_batch_size >= rows:
            return engine
    text_config = getattr(model.config, "text_config", model.config)
    context = getattr(model.config, "tokenizer_model_max_length", None) or getattr(
        text_config, "max_position_embeddings", 2048
    )
    engine = ChatEngine(tokenizer, model, image_processor, context, "generate_batch", max_batch_size=rows)
    _last_engine[:] = [(model, tokenizer, image_processor), engine]
    return engine


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
    stop: tuple[str, ...] = (),
    streamer=None,
) -> list[str]:
    """Answers to user messages (each with an optional image), decoded together by the serving
    engine (`llava.serve.engine.ChatEngine`): the batching, sampling and stop rules of the CLI, the
    API and the demo, so evaluation measures what users run. `stop` strings end an answer (not
    included in it), as `SamplingParams.stop` does. Raises the engine's BadInputError for a
    prompt that does not fit the model's context."""
    from llava.serve.request import SamplingParams

    if streamer is not None:
        raise ValueError("generate_batch(streamer=...) is not supported; stream an answer with ChatEngine.stream")
    if len(prompts) != len(images):
        raise ValueError(f"generate_batch: {len(prompts)} prompts but {len(images)} images (one per prompt, or None)")
    if not prompts:
        return []
    engine = _engine_for(model, tokenizer, image_processor, len(prompts))
    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=1.0 if top_p is None else top_p,
        stop=tuple(stop),
    )
    prepared = [engine.prepare(prompt, image=image) for prompt, image in zip(prompts, images)]
    requests = engine.submit_all(prepared, params)
    answers = []
    try:
        for request in requests:
            for _ in request.deltas(engine.closing):
                pass
            answers.append(request.result.text)
    finally:
        for request in requests:
            engine.release(request)
        engine.wait_idle()  # no generation thread left running when the caller's process exits
    return answers
