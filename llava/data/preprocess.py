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
from llava.mm_utils import bos_prefix

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
    return tokenize_conversations([pieces], tokenizer, [max_length])[0]


def tokenize_conversations(
    conversations: list[list[Piece]], tokenizer, max_lengths: list[int | None]
) -> list[TokenizedSample]:
    """`tokenize_pieces` for many conversations at once: every text chunk of every piece goes to the
    tokenizer in one batched call (the per-call overhead dominates for short pieces); each chunk is
    encoded on its own, exactly as `tokenizer_image_token` encodes it, so the ids are the same."""
    layout: list[list[tuple[bool, list[int | str]]]] = []
    texts: list[str] = []
    for pieces in conversations:
        rendered = []
        for text, supervised in pieces:
            parts: list[int | str] = []
            for i, chunk in enumerate(text.split(DEFAULT_IMAGE_TOKEN)):
                if i:
                    parts.append(IMAGE_TOKEN_INDEX)
                if chunk:
                    parts.append(chunk)
                    texts.append(chunk)
            rendered.append((supervised, parts))
        layout.append(rendered)
    encoded = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else [])
    bos = bos_prefix(tokenizer)
    samples = []
    for rendered, max_length in zip(layout, max_lengths):
        input_ids = list(bos)
        labels = [IGNORE_INDEX] * len(input_ids)
        for supervised, parts in rendered:
            for part in parts:
                ids = [part] if part == IMAGE_TOKEN_INDEX else next(encoded)
                input_ids += ids
                labels += [i if supervised and i != IMAGE_TOKEN_INDEX else IGNORE_INDEX for i in ids]
        if max_length is not None:
            input_ids, labels = input_ids[:max_length], labels[:max_length]
        samples.append(TokenizedSample(input_ids, labels))
    return samples
