"""LLaVA JSON conversations -> (input_ids, labels), built from one list of pieces.

Each piece of the rendered template is tokenized once; input ids are the concatenation and labels
copy the ids of supervised pieces only. Labels therefore cannot drift from the inputs (the
"tokenization mismatch" of upstream LLaVA cannot happen).
"""

from __future__ import annotations

from dataclasses import dataclass

from llava.constants import (
    DEFAULT_IM_END_TOKEN,
    DEFAULT_IM_START_TOKEN,
    DEFAULT_IMAGE_TOKEN,
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
)
from llava.conversation import Conversation, Piece
from llava.mm_utils import bos_prefix, tokenizer_image_token

HUMAN_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant"}


class BadSample(ValueError):
    """A data item that cannot be trained on; the message says why."""


@dataclass
class TokenizedSample:
    input_ids: list[int]
    labels: list[int]

    @property
    def num_supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def conversation_pieces(turns: list[dict], template: Conversation, mm_use_im_start_end: bool = False) -> list[Piece]:
    """Render LLaVA `conversations` turns with `template`; raises BadSample on malformed turns."""
    conv = template.copy()
    conv.messages = []
    for turn in turns:
        speaker = str(turn.get("from", "")).lower()
        value = turn.get("value")
        if not isinstance(value, str):
            raise BadSample(f"turn from {speaker!r} has no string 'value'")
        if speaker in HUMAN_ROLES:
            role = conv.roles[0]
        elif speaker in ASSISTANT_ROLES:
            role = conv.roles[1]
        else:
            raise BadSample(f"unknown 'from' value {turn.get('from')!r} (expected human/gpt)")
        if mm_use_im_start_end:
            value = value.replace(DEFAULT_IMAGE_TOKEN, DEFAULT_IM_START_TOKEN + DEFAULT_IMAGE_TOKEN + DEFAULT_IM_END_TOKEN)
        conv.append_message(role, value)
    if not any(role == conv.roles[1] for role, _ in conv.messages):
        raise BadSample("no 'gpt' turn: nothing to learn from")
    return conv.render_pieces()


def tokenize_pieces(pieces: list[Piece], tokenizer, max_length: int | None = None) -> TokenizedSample:
    """Tokenize each piece once; labels mirror supervised pieces, IGNORE elsewhere and at image sentinels."""
    input_ids = bos_prefix(tokenizer)
    labels = [IGNORE_INDEX] * len(input_ids)
    for text, supervised in pieces:
        ids = tokenizer_image_token(text, tokenizer, add_bos=False)
        input_ids += ids
        labels += [i if supervised and i != IMAGE_TOKEN_INDEX else IGNORE_INDEX for i in ids]
    if max_length is not None:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return TokenizedSample(input_ids, labels)
