"""Language of a benchmark: from its name, else from the script of its text."""

import pytest

from llava.eval.languages import (
    ANSWER_INSTRUCTIONS,
    LANGUAGES,
    detect_language,
    language_from_name,
    language_from_text,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MMMB_cn.tsv", "zh"),
        ("MMBench_dev_ar", "ar"),
        ("Parrot_MMBench_DEV_EN.tsv", "en"),
        ("mmmb_pt.tsv", "pt"),
        ("MMMB_tr", "tr"),
        ("MMBench_dev_ru_result.tsv", "ru"),
        ("my_benchmark.tsv", None),
    ],
)
def test_language_from_name(name, expected):
    assert language_from_name(name) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("图中的汽车是什么颜色？", "zh"),
        ("ما لون السيارة في الصورة؟", "ar"),
        ("Какого цвета машина на изображении?", "ru"),
        ("Resimdeki arabanın rengi nedir?", "tr"),
        ("Qual é a cor do carro na imagem?", "pt"),
        ("What colour is the car in the image?", "en"),
    ],
)
def test_language_from_text_script(text, expected):
    assert language_from_text(text) == expected


def test_name_wins_over_text():
    assert detect_language("MMMB_pt.tsv", ["What colour is the car?"]) == "pt"
    assert detect_language("custom.tsv", ["Какого цвета машина?"]) == "ru"


@pytest.mark.parametrize("code", LANGUAGES)
def test_answer_instruction_is_written_in_its_own_language(code):
    assert language_from_text(ANSWER_INSTRUCTIONS[code]) == code
