"""Pretrain the quickstart's tiny vision tower, standing in for CLIP's own pretraining.

LLaVA starts from a pretrained CLIP. The quickstart's tiny CLIP (`llava.tiny`) is random-init, and a
random-init ViT learns shapes far too slowly through an LLM for a CPU budget of minutes: measured
on this 2-core CPU, the full caption loss of stage 1 with a random tower left shapes near chance
after 400 steps. So before stage 1 the tower gets a short supervised pretraining of its own on
the easy-VQA *train* images (the test split is never read): two linear heads, colour (8-way) and
shape (3-way), on the mean of its patch tokens. Mean pooling puts the image's content into every
patch token, so the LLM finds it wherever it attends. The heads are thrown away; what is saved is
an ordinary Hugging Face vision model folder (weights + image processor) that
`--vision_tower` loads like any CLIP.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm
from transformers import AutoImageProcessor, AutoModel

from llava.model.hub_kernels import hub_kernel_kwargs
from playground.easyvqa.source import image_file, image_ids, read_image_attributes
from playground.easyvqa.translations import COLORS, SHAPES

logger = logging.getLogger(__name__)

HELD_OUT_SHARE = 0.05  # of the train-split images read, kept out of the pretraining to report its accuracy


def _load_images(ids: list[int], processor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel values, colour and shape labels of easy-VQA train images `ids`."""
    pixels, colors, shapes = [], [], []
    for image_id in tqdm(ids, desc="tower pretraining: reading images", unit="img"):
        path = image_file("train", image_id)
        color, shape = read_image_attributes(path)
        pixels.append(np.asarray(Image.open(path).convert("RGB")))
        colors.append(COLORS.index(color))
        shapes.append(SHAPES.index(shape))
    values = processor(images=pixels, return_tensors="pt")["pixel_values"]
    return values, torch.tensor(colors), torch.tensor(shapes)


def pooled_patches(encoder, pixel_values: torch.Tensor) -> torch.Tensor:
    """Mean of the patch tokens of the last layer (a CLS token, where the model has one, is left out)."""
    hidden = encoder(pixel_values=pixel_values).last_hidden_state
    num_patches = (encoder.config.image_size // encoder.config.patch_size) ** 2
    return hidden[:, -num_patches:].mean(dim=1)


def pretrain_vision_tower(
    source: Path, out: Path, steps: int, batch_size: int = 64, lr: float = 1e-3, seed: int = 0, max_images: int = 0
) -> dict[str, float]:
    """Train the vision model in `source` on colour + shape, save it to `out`; return held-out accuracy.

    `max_images` > 0 reads only that many train images (the miniature preset); 0 reads them all.
    """
    torch.manual_seed(seed)
    processor = AutoImageProcessor.from_pretrained(source)
    encoder = AutoModel.from_pretrained(source, dtype=torch.float32, **hub_kernel_kwargs())
    ids = image_ids("train")
    random.Random(f"{seed}/tower").shuffle(ids)
    ids = ids[:max_images] if max_images > 0 else ids
    split = max(1, round(len(ids) * HELD_OUT_SHARE))
    held_out, train_ids = ids[:split], ids[split:]
    pixels, colors, shapes = _load_images(train_ids, processor)
    test_pixels, test_colors, test_shapes = _load_images(held_out, processor)
    width = encoder.config.hidden_size
    heads = torch.nn.ModuleDict({"color": torch.nn.Linear(width, len(COLORS)), "shape": torch.nn.Linear(width, len(SHAPES))})
    params = [*encoder.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    encoder.train()
    progress = tqdm(range(steps), desc="tower pretraining", unit="step")
    for _ in progress:
        batch = torch.randint(0, len(pixels), (batch_size,), generator=generator)
        pooled = pooled_patches(encoder, pixels[batch])
        loss = F.cross_entropy(heads["color"](pooled), colors[batch]) + F.cross_entropy(heads["shape"](pooled), shapes[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
    encoder.eval()
    with torch.no_grad():
        pooled = pooled_patches(encoder, test_pixels)
        accuracy = {
            "color": float((heads["color"](pooled).argmax(-1) == test_colors).float().mean()),
            "shape": float((heads["shape"](pooled).argmax(-1) == test_shapes).float().mean()),
        }
    logger.info(
        "tower pretraining: %d steps, held-out accuracy colour %.3f, shape %.3f (%d train images not trained on)",
        steps, accuracy["color"], accuracy["shape"], len(held_out),
    )
    encoder.save_pretrained(out)
    processor.save_pretrained(out)
    return accuracy
