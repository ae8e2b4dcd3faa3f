"""Span protection and the <image> split: what the translator is sent, and what comes back."""

import pytest

from llava.data.translate.protect import join_turn, marker_problem, protect, split_turn

PROTECTED = {
    "fenced code": "```python\nprint('hi')\n```",
    "inline code": "`x = 1`",
    "URL": "https://example.com/a?b=1",
    "number": "3.14",
    "thousands": "1,000",
    "percent": "50%",
    "inline LaTeX": "$x^2 + y$",
    "display LaTeX": "$$\\int_0^1 f$$",
    "LaTeX command": "\\frac{a}{b}",
    "placeholder": "{name}",
    "double placeholder": "{{count}}",
    "markup tag": "<box>",
    "coordinates": "[0.12, 0.34, 0.56, 0.78]",
    "option in a line": "(B)",
}


@pytest.mark.parametrize("kind", sorted(PROTECTED))
def test_each_protected_kind_is_masked_and_restored_exactly(kind):
    text = f"Look at {PROTECTED[kind]} and say why."
    masked, spans = protect(text)
    assert spans == (PROTECTED[kind],) and masked == "Look at ⟦0⟧ and say why."
    (segment,) = split_turn(text)
    assert segment.restore("Regarde ⟦0⟧ et dis pourquoi.") == f"Regarde {PROTECTED[kind]} et dis pourquoi."


def test_option_letters_at_line_starts_and_a_lone_letter_answer_are_protected():
    masked, spans = protect("Which colour?\nA. red\nB) blue\n(C) green")
    assert masked == "Which colour?\n⟦0⟧ red\n⟦1⟧ blue\n⟦2⟧ green" and spans == ("A.", "B)", "(C)")
    assert protect("B") == ("⟦0⟧", ("B",))
    assert protect("I saw it.")[1] == ()


def test_digits_inside_words_are_left_to_the_translator():
    assert protect("an mp3 file in 3D")[1] == ()


def test_marker_brackets_in_the_source_are_protected_too():
    (segment,) = split_turn("a ⟦0⟧ b")
    assert segment.core == "a ⟦0⟧⟦1⟧⟦2⟧ b" and segment.restore(segment.core) == "a ⟦0⟧ b"


@pytest.mark.parametrize("text", [
    "<image>\nWhat is it?", "What is it?\n<image>", "Left <image> right", "<image> first <image> second",
    "  <image>\n\n  padded  \n", "<image>",
])
def test_image_marker_is_never_sent_and_rejoins_in_place(text):
    segments = split_turn(text)
    assert len(segments) == text.count("<image>") + 1
    assert all("<image>" not in s.core for s in segments)
    assert join_turn(segments, [None] * len(segments)) == text
    translated = join_turn(segments, [f"T{i}" if s.core else None for i, s in enumerate(segments)])
    assert [p.strip() == "" for p in translated.split("<image>")] == [p.strip() == "" for p in text.split("<image>")]


def test_segment_of_markers_and_punctuation_needs_no_request():
    (numbers,) = split_turn("3, 4.")
    (words,) = split_turn("3 cats")
    assert not numbers.needs_translation and words.needs_translation


@pytest.mark.parametrize("answer, problem", [
    ("x ⟦0⟧ y ⟦1⟧", None),
    ("y ⟦1⟧ x ⟦0⟧", None),
    ("x ⟦0⟧ y", "missing ⟦1⟧"),
    ("⟦0⟧ ⟦0⟧ ⟦1⟧", "repeated ⟦0⟧"),
    ("⟦0⟧ ⟦1⟧ ⟦2⟧", "unknown ⟦2⟧"),
    ("⟦0⟧ ⟦1⟧ ⟦", "a broken marker"),
])
def test_marker_problem_names_what_went_wrong(answer, problem):
    found = marker_problem(answer, 2)
    assert found == problem if problem is None else problem in found
