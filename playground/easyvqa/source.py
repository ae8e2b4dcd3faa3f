"""The easy-VQA data shipped by the `easy-vqa` package: questions, image files, image contents.

Each 64x64 image shows one shape filled with one of eight exact colours. The questions do not
name every image's colour and shape, so `read_image_attributes` reads them from the pixels:
the colour is the most frequent of the eight exact RGB values; a shape filling its whole
bounding box is a rectangle, one that overlaps the ellipse inscribed in that box by more than
0.735 (IoU) is a circle, else a triangle. On every image whose questions name the answer this
agrees with easy-VQA (circles: IoU >= 0.81, triangles <= 0.66); `tests/test_easyvqa_source.py`
checks that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "test")
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "yellow": (255, 255, 0),
    "teal": (0, 128, 128),
    "brown": (165, 42, 42),
}
CIRCLE_MIN_IOU = 0.735


class EasyVQAMissingError(RuntimeError):
    """The easy-vqa package (or its data files) is not installed."""


@dataclass(frozen=True)
class SourceQuestion:
    """One easy-VQA question: English text, English answer, image id within its split."""

    text: str
    answer: str
    image_id: int


def data_root() -> Path:
    """Folder holding easy-VQA's `train/` and `test/`."""
    try:
        import easy_vqa
    except ImportError as err:
        raise EasyVQAMissingError("the easy-vqa package is missing: pip install easy-vqa (or .[assets])") from err
    root = Path(easy_vqa.__file__).parent / "data"
    if not (root / "train" / "questions.json").is_file():
        raise EasyVQAMissingError(f"easy-vqa data not found under {root}: reinstall with pip install --force-reinstall easy-vqa")
    return root


def easy_vqa_version() -> str:
    try:
        return version("easy-vqa")
    except PackageNotFoundError:
        return "unknown"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown easy-VQA split {split!r}; use one of {SPLITS}")


@lru_cache(maxsize=2)
def load_questions(split: str) -> tuple[SourceQuestion, ...]:
    """All questions of a split, in the package's order."""
    _check_split(split)
    rows = json.loads((data_root() / split / "questions.json").read_text(encoding="utf-8"))
    return tuple(SourceQuestion(text=text, answer=answer, image_id=int(image_id)) for text, answer, image_id in rows)


def image_ids(split: str) -> list[int]:
    """Sorted ids of the split's images (the PNG file stems)."""
    _check_split(split)
    return sorted(int(path.stem) for path in (data_root() / split / "images").glob("*.png"))


def image_file(split: str, image_id: int) -> Path:
    _check_split(split)
    return data_root() / split / "images" / f"{image_id}.png"


def read_image_attributes(path: Path) -> tuple[str, str]:
    """(colour, shape) of the one shape drawn in an easy-VQA image."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    masks = {name: packed == ((r << 16) | (g << 8) | b) for name, (r, g, b) in COLOR_RGB.items()}
    color = max(masks, key=lambda name: int(masks[name].sum()))
    mask = masks[color]
    if not mask.any():
        raise ValueError(f"{path}: no pixel has one of the easy-VQA colours; is this an easy-VQA image?")
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    box = mask[top:bottom, left:right]
    if box.all():
        return color, "rectangle"
    yy, xx = np.mgrid[0 : bottom - top, 0 : right - left]
    half_h, half_w = (bottom - top) / 2, (right - left) / 2
    ellipse = ((yy + 0.5 - half_h) / half_h) ** 2 + ((xx + 0.5 - half_w) / half_w) ** 2 <= 1
    iou = (box & ellipse).sum() / (box | ellipse).sum()
    return color, "circle" if iou > CIRCLE_MIN_IOU else "triangle"
