"""Image and prompt utilities with upstream LLaVA's names and signatures."""

from __future__ import annotations

import os

import torch
from PIL import Image

from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from llava.image_limits import ImageShapeError, check_image_shape


def expand2square(image: Image.Image, background_color: tuple[int, ...]) -> Image.Image:
    """Pad a PIL image to a square, centred, filling with `background_color` (LLaVA `pad`)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    result = Image.new(image.mode, (side, side), background_color)
    result.paste(image, ((side - width) // 2, (side - height) // 2))
    return result


def _mean_color(image_processor) -> tuple[int, ...]:
    return tuple(int(x * 255) for x in image_processor.image_mean)


def process_images(images: list[Image.Image], image_processor, model_cfg) -> torch.Tensor:
    """PIL images -> pixel values (num_images, 3, H, W), honouring `model_cfg.image_aspect_ratio`.

    `pad` pads to a square with the processor's mean colour first (so the CLIP centre crop keeps
    the whole image); `square` (default) leaves resizing and cropping to the processor. Raises
    ImageShapeError (see `check_image_shape`) before resizing anything.
    """
    aspect = getattr(model_cfg, "image_aspect_ratio", "square")
    for number, img in enumerate(images):
        try:
            check_image_shape(img.size, pads_to_square=aspect == "pad")
        except ImageShapeError as err:
            raise ImageShapeError(f"image {number} {err}") from None
    images = [img.convert("RGB") for img in images]
    if aspect == "pad":
        images = [expand2square(img, _mean_color(image_processor)) for img in images]
    return image_processor(images, return_tensors="pt")["pixel_values"]


def bos_prefix(tokenizer) -> list[int]:
    """Tokens the tokenizer puts before any text (a BOS for LLaMA-style tokenizers, nothing for Qwen)."""
    ids = tokenizer("", add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and ids[:1] == [bos] else []


def tokenizer_image_token(
    prompt: str,
    tokenizer,
    image_token_index: int = IMAGE_TOKEN_INDEX,
    return_tensors: str | None = None,
    add_bos: bool = True,
):
    """Tokenize `prompt`, replacing each `<image>` with `image_token_index` (upstream signature)."""
    chunks = prompt.split(DEFAULT_IMAGE_TOKEN)
    ids: list[int] = bos_prefix(tokenizer) if add_bos else []
    for i, chunk in enumerate(chunks):
        if i:
            ids.append(image_token_index)
        if chunk:
            ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    if return_tensors == "pt":
        return torch.tensor(ids, dtype=torch.long)
    if return_tensors is not None:
        raise ValueError(f"unsupported return_tensors {return_tensors!r}; use 'pt' or None")
    return ids


def get_model_name_from_path(model_path: str) -> str:
    """Display name of a checkpoint (`.../llava-7b/checkpoint-100` -> `llava-7b_checkpoint-100`).

    Used for naming outputs only: no behaviour depends on it.
    """
    parts = os.path.normpath(model_path).split(os.sep)
    if parts[-1].startswith("checkpoint-") and len(parts) > 1:
        return f"{parts[-2]}_{parts[-1]}"
    return parts[-1]
