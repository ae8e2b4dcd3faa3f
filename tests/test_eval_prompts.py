"""The multiple-choice prompt: hint, question, lettered options, instruction in the item's language."""

from pathlib import Path

import pytest

from llava.eval.benchmark import read_benchmark
from llava.eval.languages import ANSWER_INSTRUCTIONS, LANGUAGES
from llava.eval.prompts import build_mcq_prompt

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


def item(name, key):
    bench = read_benchmark(FIXTURES / name)
    return next(i for i in bench.items if i.key == key), bench.language


def test_prompt_is_hint_question_options_then_instruction():
    row, language = item("predictions/MMBench_dev_en.tsv", "2")
    assert build_mcq_prompt(row, language).split("\n") == [
        "Count the animals.",
        "How many cats are there?",
        "A. one",
        "B. two",
        "C. three",
        "D. four",
        "Answer with the option's letter from the given choices directly.",
    ]


def test_prompt_lists_only_present_options_and_has_no_hint_line_without_hint():
    row, language = item("bench/MMMB_cn.tsv", "1")
    assert (
        build_mcq_prompt(row, language)
        == "图中有红色的正方形吗？\nA. 是\nB. 否\n" + ANSWER_INSTRUCTIONS["zh"]
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_instruction_follows_the_item_language(language):
    row, _ = item("bench/MMBench_dev_ru.tsv", "1")
    assert build_mcq_prompt(row, language).endswith("\n" + ANSWER_INSTRUCTIONS[language])


def test_file_code_cn_selects_the_chinese_instruction():
    row, _ = item("bench/MMMB_en.tsv", "1")
    assert build_mcq_prompt(row, "cn").endswith(ANSWER_INSTRUCTIONS["zh"])
