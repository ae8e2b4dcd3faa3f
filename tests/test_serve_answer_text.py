"""`AnswerText`: incremental decoding, stop strings and what a stream may show, with the real Qwen2
and SmolLM2 tokenizers."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from llava.serve.answer_text import AnswerText


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tokenizer(request, tiny_assets):
    return AutoTokenizer.from_pretrained(tiny_assets[request.param])


def feed(tokenizer, text: str, stops: list[str]) -> tuple[AnswerText, list[str], bool]:
    """Feed `text` token by token; (the answer, the deltas it showed, whether a stop was seen)."""
    answer, deltas, stopped = AnswerText(tokenizer, stops), [], False
    for token in tokenizer.encode(text, add_special_tokens=False):
        stopped = answer.add(token)
        deltas.append(answer.visible_delta())
        if stopped:
            break
    return answer, deltas, stopped


def test_deltas_join_into_the_decoded_text(tokenizer):
    answer, deltas, _ = feed(tokenizer, "Merhaba, dünya! Как дела? 你好", [])
    assert "".join(deltas) == answer.final() == "Merhaba, dünya! Как дела? 你好"


def test_a_character_split_over_several_tokens_is_shown_only_once_complete(tokenizer):
    answer, deltas, _ = feed(tokenizer, "a 🦜 parrot", [])
    assert all("\ufffd" not in delta for delta in deltas)
    assert "".join(deltas) == answer.final() == "a 🦜 parrot"


def test_the_answer_ends_before_its_stop_string(tokenizer):
    answer, deltas, stopped = feed(tokenizer, "Hello world. STOP here", ["STOP"])
    assert stopped and answer.final() == "".join(deltas) == "Hello world."


def test_the_beginning_of_a_stop_string_is_held_back_until_it_is_decided(tokenizer):
    answer = AnswerText(tokenizer, ["<|im_end|>"])
    for token in tokenizer.encode("Fine <|im", add_special_tokens=False):
        answer.add(token)
    assert answer.visible_delta() == "Fine"
    for token in tokenizer.encode("port", add_special_tokens=False):
        answer.add(token)
    assert answer.visible_delta() == " <|import"


def test_surrounding_whitespace_is_not_shown(tokenizer):
    answer, deltas, _ = feed(tokenizer, "\n\n  Yes.  ", [])
    assert "".join(deltas) == answer.final() == "Yes."
