"""Limits on untrusted images that hold before any pixel is decoded or resized.

Pillow's decompression-bomb limit bounds the decoded size. It does not bound what preprocessing
makes of an image: the CLIP processor scales the short side up to the tower's input size, and
`--image_aspect_ratio pad` pads to a square of the long side, so a 532-byte 1x100000 PNG becomes
gigabytes. `check_image_shape` refuses such images from their header size alone. Used by the
servers, the data loader, evaluation and `process_images` itself.
"""

from __future__ import annotations

import math

from PIL import Image

# Preprocessing scales an image's short side to the vision tower's input size, so an image R times
# longer than wide becomes R tower-sized squares of pixels before the centre crop; 1x100000 would
# become gigabytes. Past this ratio an image is refused before anything is resized.
MAX_ASPECT_RATIO = 20


class ImageShapeError(ValueError):
    """An image whose preprocessing would produce far more pixels than the image holds."""


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: `max_pixels` if given, else Pillow's `Image.MAX_IMAGE_PIXELS`."""
    if max_pixels is not None:
        return int(max_pixels)
    return int(Image.MAX_IMAGE_PIXELS or 0) or 89_478_485


def check_image_shape(size: tuple[int, int], pads_to_square: bool = True, max_pixels: int | None = None) -> None:
    """Raise ImageShapeError for an image that preprocessing would blow up, before any resizing.

    `size` is (width, height). Refused: an aspect ratio over MAX_ASPECT_RATIO (the short side is
    scaled up to the tower's input), and with `pads_to_square` (`--image_aspect_ratio pad`) a
    longest side whose square holds more than `pixel_limit(max_pixels)` pixels. Callers that do
    not know the aspect mode keep the default, the stricter check.
    """
    width, height = size
    short, long = min(width, height), max(width, height)
    if short < 1:
        raise ImageShapeError(f"is {width}x{height} pixels, which holds no image; send a non-empty one")
    if long > MAX_ASPECT_RATIO * short:
        raise ImageShapeError(
            f"is {width}x{height} pixels, {long / short:,.0f} times longer than wide; images over "
            f"{MAX_ASPECT_RATIO}:1 are refused because preprocessing scales the short side up to the vision "
            f"tower's input size, multiplying the pixels {long / short:,.0f}-fold. Crop it to at most "
            f"{MAX_ASPECT_RATIO}:1"
        )
    limit = pixel_limit(max_pixels)
    if pads_to_square and long * long > limit:
        raise ImageShapeError(
            f"is {width}x{height} pixels; padding it to a square (--image_aspect_ratio pad) makes "
            f"{long}x{long} = {long * long:,} pixels, over the limit of {limit:,}. Resize it so its longest "
            f"side is at most {math.isqrt(limit):,} pixels"
        )
