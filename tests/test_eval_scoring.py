"""Scores of fixed prediction files equal the hand-computed values written next to each test.

Fixture walk-through (tests/fixtures/eval/predictions):
- MMBench_dev_en: groups 1 (both copies right), 2 (copy 1000002 says B, answer A), 3 (single copy,
  answered by option text), 4 (copy 1000004 refuses), 5 (row 5 answers "A or B"). Circular: groups
  1 and 3 right = 2/5; vanilla: rows 1, 1000001, 2, 3, 4, 1000005 right = 6/9.
- MMBench_dev_cn: groups 1 and 2 right, group 3 refuses = 2/3; vanilla 4/5.
- MMMB_ru: image pairs (1,2) right, (3,4) wrong (row 4 says yes), (5,6) right = 2/3; vanilla 5/6.
- MMMB_ar: pairs from the image_index column: (1,2) right, (3,4) wrong (row 4 is empty) = 1/2.
- bad_rows_en: 8 rows, only rows 1 and 9 are sound and right = 2/8.
"""

from pathlib import Path

import pytest

from llava.eval.benchmark import read_benchmark
from llava.eval.judge import JudgeQuery
from llava.eval.scoring import accuracy, default_rule, group_units, score_rows

FIXTURES = Path(__file__).parent / "fixtures" / "eval" / "predictions"


def score(name, rule=None, judge=None):
    bench = read_benchmark(FIXTURES / name)
    return accuracy(bench, score_rows(bench, judge), rule)


def test_mmbench_circular_counts_a_group_only_if_every_copy_is_right():
    result = score("MMBench_dev_en.tsv")
    assert result.rule == "circular"
    assert (result.overall.hits, result.overall.total) == (2, 5)
    assert result.overall.accuracy == pytest.approx(0.4)


def test_mmbench_circular_per_category_and_l2_category():
    result = score("MMBench_dev_en.tsv")
    categories = {name: (t.hits, t.total) for name, t in result.by_category.items()}
    assert categories == {
        "color": (1, 1),
        "count": (0, 1),
        "knowledge": (1, 1),
        "shape": (0, 1),
        "time": (0, 1),
    }
    l2 = {name: (t.hits, t.total) for name, t in result.by_l2_category.items()}
    assert l2 == {"perception": (1, 3), "reasoning": (1, 2)}


def test_rule_flag_overrides_the_default_rule():
    result = score("MMBench_dev_en.tsv", rule="vanilla")
    assert (result.overall.hits, result.overall.total) == (6, 9)


def test_chinese_mmbench_circular():
    result = score("MMBench_dev_cn.tsv")
    assert (result.language, result.overall.hits, result.overall.total) == ("zh", 2, 3)
    vanilla = score("MMBench_dev_cn.tsv", rule="vanilla")
    assert (vanilla.overall.hits, vanilla.overall.total) == (4, 5)


def test_mmmb_pair_rule_needs_both_questions_of_an_image_right():
    result = score("MMMB_ru.tsv")
    assert (result.rule, result.overall.hits, result.overall.total) == ("pair", 2, 3)
    assert {n: (t.hits, t.total) for n, t in result.by_category.items()} == {
        "animals": (1, 1),
        "color": (0, 1),
        "objects": (1, 1),
    }


def test_mmmb_vanilla_counts_rows():
    result = score("MMMB_ru.tsv", rule="vanilla")
    assert (result.overall.hits, result.overall.total) == (5, 6)


def test_pair_key_is_read_from_the_image_index_column_of_prediction_files():
    result = score("MMMB_ar.tsv")
    assert (result.language, result.overall.hits, result.overall.total) == ("ar", 1, 2)


def test_empty_prediction_is_scored_wrong_and_counted():
    bench = read_benchmark(FIXTURES / "MMMB_ar.tsv")
    rows = score_rows(bench)
    empty = next(row for row in rows if row.item.key == "4")
    assert (empty.hit, empty.issues) == (False, ["empty prediction"])


def test_bad_rows_are_scored_wrong_and_counted():
    result = score("bad_rows_en.tsv")
    assert (result.rule, result.overall.hits, result.overall.total) == ("vanilla", 2, 8)
    assert result.rows_with_issues == 6


def test_each_bad_row_gets_exactly_one_message_naming_its_row_and_index(caplog):
    bench = read_benchmark(FIXTURES / "bad_rows_en.tsv")
    score_rows(bench)
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 6
    assert (
        "bad_rows_en.tsv row 2 (index 2): malformed TSV line: 5 fields where the header has 8; empty image cell"
        in lines[0]
    )
    for row, key in [(2, "2"), (3, "x"), (4, "4"), (5, "5"), (6, "6"), (7, "8")]:
        assert sum(f"row {row} (index {key}):" in line for line in lines) == 1


def test_answer_outside_the_options_is_an_issue():
    bench = read_benchmark(FIXTURES / "bad_rows_en.tsv")
    row = next(r for r in score_rows(bench) if r.item.key == "5")
    assert row.issues == ["answer 'C' is not one of the options AB"]


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("MMBench_dev_en", "circular"),
        ("MMBench_DEV_CN_V11", "circular"),
        ("MMMB_ar", "pair"),
        ("easyvqa_en", "vanilla"),
    ],
)
def test_default_rule_per_dataset(name, rule):
    assert default_rule(name) == rule


def test_pair_rule_without_image_keys_scores_rows_alone_and_warns(caplog):
    bench = read_benchmark(FIXTURES / "MMBench_dev_cn.tsv")
    result = accuracy(bench, score_rows(bench), "pair")
    assert result.overall.total == 5
    assert "pair rule asked but no row names its image" in caplog.text


def test_unknown_rule_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="vanilla, circular, pair"):
        group_units([], "majority")


def test_judge_is_asked_only_where_the_rules_give_no_answer():
    asked: list[JudgeQuery] = []

    def judge(query: JudgeQuery) -> str:
        asked.append(query)
        return "B"

    bench = read_benchmark(FIXTURES / "MMBench_dev_en.tsv")
    rows = score_rows(bench, judge)
    assert sorted(q.prediction for q in asked) == ["A or B", "I cannot tell."]
    judged = {row.item.key: row.extraction for row in rows if row.extraction.method == "judge"}
    assert {key: e.letter for key, e in judged.items()} == {"1000004": "B", "5": "B"}
    assert accuracy(bench, rows).overall.hits == 3  # group 4 is now right as well
