"""Untrusted images: what the servers accept, and the reason they give for what they refuse."""

from __future__ import annotations

import pytest
from serve_helpers import data_url, png_bytes, png_claiming

from llava.serve.inputs import BadInputError, decode_data_url, open_image, pixel_limit


def test_png_bytes_decode_to_an_rgb_image():
    image = open_image(png_bytes((8, 6)))
    assert (image.mode, image.size) == ("RGB", (8, 6))


def test_text_file_is_refused_as_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    with pytest.raises(BadInputError, match="notes.png is not an image Pillow can read"):
        open_image(path, name="notes.png")


def test_truncated_png_is_refused_as_corrupt():
    truncated = png_bytes((64, 64))[:-30]
    with pytest.raises(BadInputError, match="corrupt or truncated"):
        open_image(truncated)


def test_empty_upload_is_refused():
    with pytest.raises(BadInputError, match="is empty"):
        open_image(b"")


def test_decompression_bomb_is_refused_by_pillows_guard():
    bomb = png_claiming(40_000, 40_000)  # 1.6 gigapixels: over twice Pillow's limit
    with pytest.raises(BadInputError, match="decompression-bomb"):
        open_image(bomb)


def test_image_between_pillows_limit_and_twice_it_is_refused():
    side = int((1.5 * pixel_limit()) ** 0.5)  # Pillow itself would only warn here
    with pytest.raises(BadInputError, match="decompression-bomb"):
        open_image(png_claiming(side, side))


def test_image_over_a_configured_pixel_limit_is_refused_with_its_size():
    with pytest.raises(BadInputError, match=r"100x100 = 10,000 pixels, over the limit of 5,000"):
        open_image(png_bytes((100, 100)), max_pixels=5_000)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        open_image(tmp_path / "absent.png", name="absent.png")


def test_data_url_png_decodes():
    assert decode_data_url(data_url(png_bytes((5, 4)))).size == (5, 4)


def test_remote_image_url_is_refused_without_fetching():
    with pytest.raises(BadInputError, match="does not fetch remote images"):
        decode_data_url("https://example.com/cat.png")


def test_data_url_with_invalid_base64_is_refused():
    with pytest.raises(BadInputError, match="invalid base64"):
        decode_data_url("data:image/png;base64,@@@not-base64@@@")


def test_data_url_with_a_non_image_media_type_is_refused():
    with pytest.raises(BadInputError, match="media type 'text/plain'"):
        decode_data_url(data_url(b"hello", mime="text/plain"))


def test_directory_is_refused_as_a_directory(tmp_path):
    with pytest.raises(BadInputError, match="is a directory; pass one image file"):
        open_image(tmp_path, name="--image-file")
