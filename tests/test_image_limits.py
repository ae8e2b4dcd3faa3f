"""Image shapes that preprocessing would blow up are refused from their size alone, before resizing."""

from __future__ import annotations

import pytest
from PIL import Image
from transformers import AutoImageProcessor

from llava.image_limits import MAX_ASPECT_RATIO, ImageShapeError, check_image_shape
from llava.mm_utils import process_images
from llava.model import LlavaConfig


def test_image_longer_than_the_aspect_limit_is_refused_with_its_ratio():
    with pytest.raises(ImageShapeError, match=r"1x100000 pixels, 100,000 times longer than wide.*at most 20:1"):
        check_image_shape((1, 100_000))


def test_image_at_the_aspect_limit_is_accepted():
    check_image_shape((10, 10 * MAX_ASPECT_RATIO))


def test_pad_mode_refuses_a_long_side_whose_square_is_over_the_pixel_limit():
    with pytest.raises(ImageShapeError, match=r"makes 2000x2000 = 4,000,000 pixels.*at most 1,000 pixels"):
        check_image_shape((1000, 2000), pads_to_square=True, max_pixels=1_000_000)


def test_square_mode_accepts_that_long_side():
    check_image_shape((1000, 2000), pads_to_square=False, max_pixels=1_000_000)


def test_process_images_refuses_before_resizing(tiny_assets):
    processor = AutoImageProcessor.from_pretrained(tiny_assets["clip"])
    with pytest.raises(ImageShapeError, match="image 0 is 1x100000 pixels"):
        process_images([Image.new("RGB", (1, 100_000))], processor, LlavaConfig(image_aspect_ratio="square"))
