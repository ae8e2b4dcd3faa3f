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


def test_vlmevalkit_style_is_its_english_mcq_prompt_in_every_language():
    from llava.eval.prompts import build_prompt

    row, language = item("predictions/MMBench_dev_en.tsv", "2")
    assert build_prompt(row, "pt", style="vlmevalkit") == (
        "Hint: Count the animals.\nQuestion: How many cats are there?\nOptions:\n"
        "A. one\nB. two\nC. three\nD. four\nPlease select the correct answer from the options above. \n"
    )


def test_parrot_style_takes_its_instruction_from_the_dataset_suffix():
    from llava.eval.prompts import PARROT_MCQ_INSTRUCTIONS, build_prompt

    row, language = item("predictions/MMBench_dev_en.tsv", "2")
    text = build_prompt(row, language, style="parrot", dataset="MMBench_dev_pt")
    assert text == (
        "Count the animals.\nHow many cats are there?\nA. one\nB. two\nC. three\nD. four\n"
        + PARROT_MCQ_INSTRUCTIONS["_pt"]
    )
    assert build_prompt(row, language, style="parrot", dataset="MMBench_dev_en").endswith(
        "\nAnswer with the option's letter from the given choices directly."
    )
    cn, language = item("bench/MMMB_cn.tsv", "1")
    assert build_prompt(cn, language, style="parrot", dataset="MMMB_cn").endswith("\n请直接用给定选项中的选项字母回答。")


def test_yes_no_rows_keep_the_question_except_in_the_parrot_style():
    from llava.eval.benchmark import BenchmarkItem
    from llava.eval.prompts import build_prompt

    row = BenchmarkItem(row=1, key="0", index=0, fields={"question": "Is it red? Please answer yes or no."}, options={})
    assert build_prompt(row, "en", kind="yorn") == row.question
    assert build_prompt(row, "en", kind="yorn", style="vlmevalkit") == row.question
    assert build_prompt(row, "en", kind="yorn", style="parrot") == (
        "Is it red?\nPlease strictly answer Yes or No. Answer the question using a single word or phrase."
    )
    with pytest.raises(ValueError, match="--prompt-style 'plain' is not a prompt style"):
        build_prompt(row, "en", style="plain")
