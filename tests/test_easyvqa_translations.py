"""The six-language easy-VQA translation table: coverage, rendering and grammar spot checks."""

from __future__ import annotations

import re

import pytest

from playground.easyvqa.source import load_questions
from playground.easyvqa.translations import (
    COLORS,
    LANGUAGES,
    SHAPES,
    TranslationTableError,
    capitalize,
    load_table,
)

OTHER_LANGUAGES = [lang for lang in LANGUAGES if lang != "en"]
SCRIPT = {"zh": r"[\u4e00-\u9fff]", "ar": r"[\u0600-\u06ff]", "ru": r"[\u0400-\u04ff]"}


def _all_renderings(lang: str) -> list[str]:
    """Every question, caption, answer word and instruction the table can produce in `lang`."""
    table = load_table()
    texts = [table.question(t, lang, color=c, shape=s) for t in table.templates for c in COLORS for s in SHAPES]
    texts += [table.caption(lang, c, s) for c in COLORS for s in SHAPES]
    texts += list(table.answer_vocabulary(lang).values()) + [table.letter_instruction(lang)]
    return texts


def _english_source_words() -> set[str]:
    words = set()
    for text in _all_renderings("en"):
        words.update(w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 1)  # "a" is also pt
    return words


def test_table_has_all_24_easy_vqa_templates_including_8_negated():
    table = load_table()
    assert len(table.templates) == 24
    assert sum(t.negated for t in table.templates) == 8


def test_every_easy_vqa_question_matches_a_template_and_renders_back_to_itself():
    table = load_table()
    texts = {q.text for split in ("train", "test") for q in load_questions(split)}
    for text in texts:
        template, color, shape = table.match_english(text)
        assert table.question(template, "en", color=color, shape=shape) == capitalize(text, "en")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_template_renders_for_every_colour_and_shape_without_placeholders(lang):
    for text in _all_renderings(lang):
        assert text.strip() and "{" not in text and "}" not in text, text


@pytest.mark.parametrize("lang", OTHER_LANGUAGES)
def test_no_english_source_word_is_left_in_other_languages(lang):
    english = _english_source_words()
    for text in _all_renderings(lang):
        leftover = [w for w in re.findall(r"\w+", text.lower()) if w in english]
        assert not leftover, (text, leftover)


@pytest.mark.parametrize("lang", sorted(SCRIPT))
def test_non_latin_languages_are_written_in_their_script(lang):
    for text in _all_renderings(lang):
        assert re.search(SCRIPT[lang], text), text
        assert not re.search(r"[A-Za-z]", text), text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_templates_take_the_same_slots_in_every_language(lang):
    for template in load_table().templates:
        slots = set(re.findall(r"\{(color|shape)\.", template.text[lang]))
        assert slots == set(template.slots), (template.id, lang)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_answer_words_are_distinct_and_none_contains_another_as_a_word(lang):
    words = [w.lower() for w in load_table().answer_vocabulary(lang).values()]
    assert len(set(words)) == len(words)
    for word in words:
        assert not [other for other in words if other != word and other in re.findall(r"\w+", word)], word


@pytest.mark.parametrize(
    ("lang", "color", "shape", "caption"),
    [
        ("en", "red", "circle", "Red circle."),
        ("zh", "red", "circle", "一个红色的圆形。"),
        ("pt", "red", "circle", "Um círculo vermelho."),
        ("ar", "red", "circle", "دائرة حمراء."),
        ("ar", "red", "rectangle", "مستطيل أحمر."),
        ("tr", "red", "triangle", "Kırmızı bir üçgen."),
        ("ru", "blue", "triangle", "Синий треугольник."),
    ],
)
def test_caption_colour_agrees_with_the_shape_noun(lang, color, shape, caption):
    assert load_table().caption(lang, color, shape) == caption


@pytest.mark.parametrize(
    ("template_id", "lang", "color", "shape", "question"),
    [
        ("has_color_contain", "pt", "red", None, "A imagem contém uma forma vermelha?"),
        ("has_color_contain", "ru", "blue", None, "Содержит ли изображение синюю фигуру?"),
        ("not_color_there_in_image", "ru", "blue", None, "Верно ли, что на изображении нет синей фигуры?"),
        ("not_shape_there", "ru", None, "circle", "Круга нет, верно?"),
        ("color_of_named", "tr", None, "circle", "Dairenin rengi nedir?"),
        ("has_shape_present", "ar", None, "circle", "هل تظهر دائرة؟"),
        ("has_shape_present", "ar", None, "triangle", "هل يظهر مثلث؟"),
        ("shape_of_colored", "ar", "yellow", None, "ما الشكل الأصفر؟"),
        ("color_of_named", "pt", None, "triangle", "Qual é a cor do triângulo?"),
    ],
)
def test_case_and_gender_forms_in_questions(template_id, lang, color, shape, question):
    table = load_table()
    assert table.question(table.template(template_id), lang, color=color, shape=shape) == question


def test_turkish_capitalisation_keeps_the_dotted_i():
    assert capitalize("iki", "tr") == "İki"
    assert capitalize("ışık", "tr") == "Işık"
    assert capitalize("image", "en") == "Image"


def test_a_template_without_its_slot_word_names_the_missing_argument():
    table = load_table()
    with pytest.raises(TranslationTableError, match="color="):
        table.question(table.template("shape_of_colored"), "ru", shape="circle")


def test_letter_instruction_is_the_one_the_evaluation_prompts_with():
    from llava.eval.languages import ANSWER_INSTRUCTIONS

    table = load_table()
    assert {lang: table.letter_instruction(lang) for lang in LANGUAGES} == ANSWER_INSTRUCTIONS
