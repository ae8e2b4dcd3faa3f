"""Conversation templates, rendered as (text, supervised) pieces.

Training labels are built from the very pieces that build the input ids (see
`llava.data.preprocess`), so the two can never disagree and no sample is silently masked.
Answer pieces start where the model starts writing at inference: for `vicuna_v1` the answer
piece is " {reply}</s>" after "ASSISTANT:", exactly what generation produces after the prompt.

Templates: `plain` (stage-1 captions), `vicuna_v1` (alias `v1`), ChatML as `qwen_1_5`, `qwen_2`
and `chatml`, and `llama_3`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from llava.constants import DEFAULT_IMAGE_TOKEN

Piece = tuple[str, bool]  # (text, supervised)


@dataclass
class Conversation:
    """A template plus the messages of one conversation (upstream-compatible API)."""

    name: str
    style: str  # "plain" | "vicuna" | "chatml" | "llama3"
    system: str
    roles: tuple[str, str]
    stop_str: str
    messages: list[list] = field(default_factory=list)

    def copy(self) -> Conversation:
        return dataclasses.replace(self, messages=[list(m) for m in self.messages])

    def append_message(self, role: str, message: str | None) -> None:
        self.messages.append([role, message])

    def render_pieces(self) -> list[Piece]:
        """The whole conversation as pieces; a trailing `None` assistant message yields the generation prompt."""
        return _RENDERERS[self.style](self)

    def get_prompt(self) -> str:
        return "".join(text for text, _ in self.render_pieces())

    def answer_end(self) -> str:
        """Text that closes every assistant turn (it is supervised, so the model learns to stop)."""
        return self.stop_str


def _pairs(conv: Conversation):
    for role, message in conv.messages:
        yield role == conv.roles[1], role, message


def _render_plain(conv: Conversation) -> list[Piece]:
    # Upstream `plain`: the human turn is reduced to the image, the caption is the target.
    pieces: list[Piece] = []
    for is_assistant, _, message in _pairs(conv):
        if not is_assistant:
            pieces.append((DEFAULT_IMAGE_TOKEN if DEFAULT_IMAGE_TOKEN in (message or "") else "", False))
        elif message is not None:
            pieces.append((message + conv.stop_str, True))
    return pieces


def _render_vicuna(conv: Conversation) -> list[Piece]:
    pieces: list[Piece] = [(conv.system + " ", False)]
    for is_assistant, role, message in _pairs(conv):
        if not is_assistant:
            pieces.append((f"{role}: {message} ", False))
        elif message is None:
            pieces.append((f"{role}:", False))
        else:
            pieces.append((f"{role}:", False))
            pieces.append((f" {message}{conv.stop_str}", True))
    return pieces


def _render_chatml(conv: Conversation) -> list[Piece]:
    pieces: list[Piece] = [(f"<|im_start|>system\n{conv.system}<|im_end|>\n", False)] if conv.system else []
    for is_assistant, role, message in _pairs(conv):
        if not is_assistant:
            pieces.append((f"<|im_start|>{role}\n{message}<|im_end|>\n", False))
            continue
        pieces.append((f"<|im_start|>{role}\n", False))
        if message is not None:
            pieces.append((f"{message}{conv.stop_str}", True))
            pieces.append(("\n", False))
    return pieces


def _render_llama3(conv: Conversation) -> list[Piece]:
    def header(role: str) -> str:
        return f"<|start_header_id|>{role}<|end_header_id|>\n\n"

    pieces: list[Piece] = [(header("system") + conv.system + "<|eot_id|>", False)] if conv.system else []
    for is_assistant, role, message in _pairs(conv):
        if not is_assistant:
            pieces.append((header(role) + f"{message}<|eot_id|>", False))
            continue
        pieces.append((header(role), False))
        if message is not None:
            pieces.append((f"{message}{conv.stop_str}", True))
    return pieces


_RENDERERS = {"plain": _render_plain, "vicuna": _render_vicuna, "chatml": _render_chatml, "llama3": _render_llama3}

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
CHATML_SYSTEM = "You are a helpful assistant."

conv_plain = Conversation("plain", "plain", system="", roles=("USER", "ASSISTANT"), stop_str="\n")
conv_vicuna_v1 = Conversation("vicuna_v1", "vicuna", VICUNA_SYSTEM, ("USER", "ASSISTANT"), stop_str="</s>")
conv_chatml = Conversation("chatml", "chatml", CHATML_SYSTEM, ("user", "assistant"), stop_str="<|im_end|>")
conv_llama_3 = Conversation(
    "llama_3", "llama3", "You are a helpful language and vision assistant.", ("user", "assistant"), "<|eot_id|>"
)

conv_templates: dict[str, Conversation] = {
    "plain": conv_plain,
    "vicuna_v1": conv_vicuna_v1,
    "v1": conv_vicuna_v1,
    "qwen_1_5": dataclasses.replace(conv_chatml, name="qwen_1_5"),
    "qwen_2": dataclasses.replace(conv_chatml, name="qwen_2"),
    "chatml": conv_chatml,
    "llama_3": conv_llama_3,
}
default_conversation = conv_vicuna_v1


def get_conv_template(name: str) -> Conversation:
    """A fresh copy of template `name` (the `--version` flag of training)."""
    if name not in conv_templates:
        raise ValueError(f"unknown conversation template --version {name!r}; choose one of {sorted(conv_templates)}")
    return conv_templates[name].copy()
