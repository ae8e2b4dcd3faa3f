"""Untrusted input checks shared by the CLI, the demo and the API.

Every rejection raises `BadInputError`, whose message is written for the person who sent the input
(it is shown in the demo, returned as the HTTP 400 reason by the API, printed by the CLI). The
servers catch it, answer, and keep serving.

Images: Pillow reads the header first (`Image.open` is lazy), so the pixel count is checked before
any pixel is decoded. The limit is Pillow's decompression-bomb limit, `PIL.Image.MAX_IMAGE_PIXELS`
(about 89.5 megapixels) unless a smaller one is passed. Pillow itself only warns between 1x and 2x
that limit; here anything over it is refused. What preprocessing would make of an image (its
aspect ratio, its padded square) is checked by `ChatEngine.check_image`, which knows the model.

Text: a message is refused by its length in characters before it is tokenized (tokenizing a
5 MB body takes seconds), and text holding a lone UTF-16 surrogate is refused (JSON allows
`"\\ud800"`; no tokenizer can encode it).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import warnings
from collections.abc import Sequence

from PIL import Image, UnidentifiedImageError

from llava.image_limits import pixel_limit

SUPPORTED_FORMATS_HINT = "PNG, JPEG, WebP, GIF or BMP"
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.DOTALL)


class BadInputError(ValueError):
    """Input that the server refuses; the message says what was wrong and how to fix it."""


def open_image(source: bytes | str | os.PathLike, name: str = "image", max_pixels: int | None = None) -> Image.Image:
    """Decode an untrusted image (raw bytes or a file path) into an RGB PIL image.

    Raises BadInputError for a file that is not an image, a corrupt or truncated image, and an image
    with more pixels than `pixel_limit(max_pixels)` (a decompression bomb or simply too large).
    """
    limit = pixel_limit(max_pixels)
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    if (not source) if isinstance(source, bytes) else (os.path.isfile(source) and os.path.getsize(source) == 0):
        raise BadInputError(f"{name} is empty (0 bytes); use a {SUPPORTED_FORMATS_HINT} image")
    if not isinstance(source, bytes) and os.path.isdir(source):
        raise BadInputError(f"{name} {os.fspath(source)} is a directory; pass one image file inside it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                width, height = img.size
                if width * height > limit:
                    raise BadInputError(_too_large(name, width, height, limit))
                img.load()
                return img.convert("RGB")
    except BadInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadInputError(f"{name} is refused by Pillow's decompression-bomb guard ({err}); send a smaller image") from err
    except UnidentifiedImageError as err:
        raise BadInputError(f"{name} is not an image Pillow can read; use a {SUPPORTED_FORMATS_HINT} file") from err
    except FileNotFoundError as err:
        raise BadInputError(f"{name}: no such file") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadInputError(f"{name} is corrupt or truncated ({err}); re-export it and upload it again") from err


def _too_large(name: str, width: int, height: int, limit: int) -> str:
    return (
        f"{name} is {width}x{height} = {width * height:,} pixels, over the limit of {limit:,} "
        f"(Pillow's decompression-bomb limit); resize it below that and try again"
    )


def decode_data_url(url: str, name: str = "image_url", max_pixels: int | None = None) -> Image.Image:
    """Decode a `data:image/...;base64,...` URL into an RGB image (see `open_image` for the checks).

    Remote URLs are refused: the server never fetches anything from the network.
    """
    if not isinstance(url, str) or not url.startswith("data:"):
        shown = url[:60] if isinstance(url, str) else type(url).__name__
        raise BadInputError(
            f"{name} must be a base64 data URL (data:image/png;base64,...); got {shown!r}. "
            "This server does not fetch remote images"
        )
    match = _DATA_URL.match(url)
    if match is None:
        raise BadInputError(f"{name} is not a base64 data URL; expected data:image/<type>;base64,<data>")
    mime = match.group("mime") or ""
    if mime and not mime.startswith("image/"):
        raise BadInputError(f"{name} has media type {mime!r}; send an image (image/png, image/jpeg, ...)")
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", match.group("data")), validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadInputError(f"{name} holds invalid base64 ({err})") from err
    return open_image(raw, name=name, max_pixels=max_pixels)


def longest_token_chars(tokenizer) -> int:
    """Characters in the longest token of the vocabulary: no text of N tokens is longer than N times this."""
    return max(len(token) for token in tokenizer.get_vocab())


def check_prompt_text(texts: Sequence[str], max_chars: int, capacity: str) -> None:
    """Refuse texts that together exceed `max_chars` characters, or that hold a lone surrogate.

    `capacity` completes the message: "tiny-parrot reads at most 4096 tokens".
    """
    total = sum(len(text) for text in texts)
    if total > max_chars:
        raise BadInputError(
            f"the prompt is {total:,} characters but {capacity}, which never hold more than {max_chars:,} "
            "characters; shorten the message or clear the conversation"
        )
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise BadInputError(
                f"the text holds a lone surrogate ({text[err.start]!r} at character {err.start}), which is not "
                "a character; send valid UTF-8, and in JSON escape characters beyond U+FFFF as surrogate pairs"
            ) from None
