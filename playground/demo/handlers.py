"""What the demo's buttons do, without gradio: each handler takes plain values and returns (or
yields, while streaming) a named tuple whose fields are the demo's outputs, in order.

Every bad input (a file that is not an image, a corrupt image, a decompression bomb or an image
over Pillow's pixel limit, an empty prompt, a prompt longer than the model's context) becomes a
message in the status line; the chat and the server are left as they were.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import NamedTuple

import pandas as pd
from PIL import Image

from llava.eval.languages import LANGUAGE_NAMES, language_from_text
from llava.serve.engine import ChatEngine, GenerationResult, SamplingParams
from llava.serve.inputs import BadInputError

logger = logging.getLogger(__name__)

Turns = list[tuple[str, str]]
Messages = list[dict]


class UploadUpdate(NamedTuple):
    image: Image.Image | None
    preview: Image.Image | None
    status: str
    chatbot: Messages
    turns: Turns
    routing_table: pd.DataFrame
    routing_note: str


class ChatUpdate(NamedTuple):
    chatbot: Messages
    turns: Turns
    message_box: str
    status: str
    routing_table: pd.DataFrame
    routing_note: str


def routing_table(weights: list[float] | None) -> pd.DataFrame:
    """One row per expert: `expert` ("E0", "E1", ...) and `weight` (the router's probability).

    The dtypes are fixed even when empty: gradio 6.31 types an empty object column as quantitative,
    and a chart that started from such a frame drew no bars once the routing arrived.
    """
    weights = weights or []
    width = len(str(max(len(weights) - 1, 0)))
    names = pd.Series([f"E{i:0{width}d}" for i in range(len(weights))], dtype="string")
    return pd.DataFrame({"expert": names, "weight": pd.Series(weights, dtype="float64")})


def routing_note(engine: ChatEngine, weights: list[float] | None, prompt: str) -> str:
    """The caption under the chart: what it shows, or why it is empty."""
    reason = engine.routing_unavailable_reason()
    if reason:
        return reason
    if not weights:
        return "No routing yet: the router runs on the image, so upload an image and ask about it."
    lang = language_from_text(prompt)
    top = max(range(len(weights)), key=weights.__getitem__)
    return (
        f"Expert distribution the router chose for this prompt ({LANGUAGE_NAMES[lang]} detected). "
        f"Highest: E{top} at {weights[top]:.3f}."
    )


def upload(engine: ChatEngine, path: str | None) -> UploadUpdate:
    """Check an uploaded file; a new image starts a new conversation about it."""
    if not path:
        return UploadUpdate(None, None, "Image removed.", [], [], routing_table(None), routing_note(engine, None, ""))
    name = os.path.basename(path)
    try:
        image = engine.load_image(path, name=name)
    except BadInputError as err:
        logger.info("upload refused: %s", err)
        return UploadUpdate(None, None, f"⚠️ {err}", [], [], routing_table(None), routing_note(engine, None, ""))
    status = f"Image ready: {name} ({image.width}x{image.height}). Ask about it below."
    return UploadUpdate(image, image, status, [], [], routing_table(None), routing_note(engine, None, ""))


def chat(
    engine: ChatEngine,
    message: str,
    image: Image.Image | None,
    turns: Turns,
    chatbot: Messages,
    params: SamplingParams,
) -> Iterator[ChatUpdate]:
    """Answer `message` after `turns`, yielding the chat as the answer streams in."""
    turns, chatbot = list(turns or []), list(chatbot or [])
    try:
        prepared = engine.prepare(message, turns, image, image_turn=0)
        params = params.checked()
    except BadInputError as err:
        yield ChatUpdate(chatbot, turns, message, f"⚠️ {err}", routing_table(None), routing_note(engine, None, ""))
        return
    chatbot += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
    result, table, note = GenerationResult(), routing_table(None), routing_note(engine, None, message)
    yield ChatUpdate(list(chatbot), turns, "", "Generating…", table, note)
    try:
        for delta in engine.stream(prepared, params, result):
            chatbot[-1] = {"role": "assistant", "content": chatbot[-1]["content"] + delta}
            if result.routing is not None and table.empty:
                table, note = routing_table(result.routing), routing_note(engine, result.routing, message)
            yield ChatUpdate(list(chatbot), turns, "", "Generating…", table, note)
    except Exception as err:  # keep serving: show the failure, drop the half answer
        logger.exception("generation failed")
        yield ChatUpdate(chatbot[:-2], turns, message, f"⚠️ generation failed: {err}", table, note)
        return
    chatbot[-1] = {"role": "assistant", "content": result.text}
    table, note = routing_table(result.routing), routing_note(engine, result.routing, message)
    done = f"Done: {result.completion_tokens} tokens ({result.finish_reason})."
    if not result.text:
        done += " The model produced no visible text; try a higher temperature."
    yield ChatUpdate(chatbot, turns + [(message, result.text)], "", done, table, note)


def regenerate(
    engine: ChatEngine, image: Image.Image | None, turns: Turns, chatbot: Messages, params: SamplingParams
) -> Iterator[ChatUpdate]:
    """Answer the last message again (sampling may give a different answer)."""
    turns, chatbot = list(turns or []), list(chatbot or [])
    if not turns:
        status = "Nothing to regenerate yet: ask a question first."
        yield ChatUpdate(chatbot, turns, "", status, routing_table(None), routing_note(engine, None, ""))
        return
    message, _ = turns.pop()
    yield from chat(engine, message, image, turns, chatbot[:-2], params)


def clear(engine: ChatEngine) -> UploadUpdate:
    """Forget the conversation and the image."""
    return UploadUpdate(None, None, "Cleared.", [], [], routing_table(None), routing_note(engine, None, ""))
