"""Quality checks: each failure has its named reason; real translations pass."""

import pytest

from llava.data.translate.checks import QualityChecks, load_detector, normalize_answer
from llava.data.translate.languages import detector_codes
from llava.data.translate.protect import split_turn
from playground.easyvqa.translations import COLORS, SHAPES, load_table


@pytest.fixture(scope="module")
def checks():
    return QualityChecks(["zh", "pt", "ar", "tr", "ru"], "en")


SOURCE = "What color is the {shape} in the picture at https://example.com/x.png?"
GOOD_PT = "De que cor é a ⟦0⟧ na imagem em ⟦1⟧?"

FAILURES = {
    "empty": "   ",
    "protected_spans": "De que cor é a forma na imagem em ⟦1⟧?",
    "refusal": "Desculpe, não posso traduzir ⟦0⟧ ⟦1⟧.",
    "preamble": "Here is the translation: De que cor é a ⟦0⟧ na imagem em ⟦1⟧?",
    "turn_count": "User: De que cor é a ⟦0⟧ na imagem em ⟦1⟧?\nAssistant: É vermelha.",
    "length_ratio": "⟦0⟧ ⟦1⟧ cor?",
    "language": "What color is the ⟦0⟧ in the picture at ⟦1⟧?",
}


@pytest.mark.parametrize("reason", sorted(FAILURES))
def test_each_failure_is_rejected_with_its_named_reason(checks, reason):
    (segment,) = split_turn(SOURCE)
    assert checks.check(segment, GOOD_PT, "pt") is None
    rejection = checks.check(segment, FAILURES[reason], "pt")
    assert rejection is not None and rejection.reason == reason and rejection.detail


def test_spanish_for_portuguese_is_caught_by_the_neighbour_language():
    (segment,) = split_turn("Is there a green circle next to the red triangle in this picture?")
    rejection = QualityChecks(["pt"], "en").check(segment, "¿Hay un círculo verde junto al triángulo rojo en esta imagen?", "pt")
    assert rejection is not None and rejection.reason == "language" and "es" in rejection.detail


@pytest.mark.parametrize("lang", ["zh", "pt", "ar", "tr", "ru"])
def test_every_easyvqa_translation_passes(checks, lang):
    table = load_table()
    pairs = [(table.question(t, "en", c, s), table.question(t, lang, c, s))
             for t in table.templates for c in COLORS for s in SHAPES]
    pairs += [(table.caption("en", c, s), table.caption(lang, c, s)) for c in COLORS for s in SHAPES]
    english = table.answer_vocabulary("en")
    pairs += [(english[k], v) for k, v in table.answer_vocabulary(lang).items()]
    rejected = {}
    for source, target in pairs:
        (segment,) = split_turn(source)
        rejection = checks.check(segment, target, lang)
        if rejection is not None:
            rejected[target] = rejection
    assert rejected == {}


def test_untranslated_short_answer_is_rejected_for_another_script(checks):
    (segment,) = split_turn("Red")
    assert checks.check(segment, "Red", "zh").reason == "language"


def test_quotes_wrapped_around_an_unquoted_source_are_removed():
    assert normalize_answer(' "Olá" ', "Hello") == "Olá"
    assert normalize_answer('"Olá"', '"Hello"') == '"Olá"'


def test_detector_loads_once_per_process_for_the_languages_needed():
    codes = tuple(detector_codes(["zh", "pt"], "en"))
    assert codes == ("en", "es", "ja", "pt", "zh")
    assert load_detector(codes) is load_detector(codes)


def test_any_identifiable_language_works_and_the_six_have_tuned_prompts():
    from llava.data.translate.languages import TUNED_NOTES, UnknownLanguage, parse_langs, system_prompt

    assert set(TUNED_NOTES) == {"en", "zh", "pt", "ar", "tr", "ru"}
    assert parse_langs("de, sw,de") == ["de", "sw"]
    german = system_prompt("de", "en")
    assert "into German" in german and german.endswith("Target language: German (de)")
    assert not any(note in german for note in TUNED_NOTES.values())
    assert TUNED_NOTES["pt"] in system_prompt("pt", "en")
    assert "was rejected (preamble)" in system_prompt("pt", "en", "preamble")
    with pytest.raises(UnknownLanguage, match="'xx'"):
        parse_langs("zh,xx")
