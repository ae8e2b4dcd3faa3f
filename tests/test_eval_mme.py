"""MME: VLMEvalKit's yes/no extraction and its MME rating, checked against hand-computed scores."""

import csv
import logging

import pytest

from llava.eval.benchmark import BenchmarkFileError, read_benchmark
from llava.eval.mme import extract_yes_no, rate_mme, score_yes_no_rows
from llava.eval.score import main as score_main
from llava.eval.score import score_file

COLUMNS = ["index", "question", "answer", "category", "image_path", "prediction"]
Q = "Is there a cat in the image? Please answer yes or no."
# VLMEvalKit's prediction layout: no `image` column, the pairs come from `image_path`.
ROWS = [
    # OCR: image o1 both right, o2 one right -> acc 3/4 = 75, acc+ 1/2 = 50, score 125
    (1, Q, "Yes", "OCR", "o1.jpg", "Yes."),
    (2, Q, "No", "OCR", "o1.jpg", "No, it is not."),
    (3, Q, "Yes", "OCR", "o2.jpg", "The answer is yes!"),
    (4, Q, "No", "OCR", "o2.jpg", "Yes"),
    # artwork: both unknown -> 0
    (5, Q, "Yes", "artwork", "a1.jpg", "yes and no"),
    (6, Q, "No", "artwork", "a1.jpg", "Yesterday"),
    # code_reasoning: all right -> 100 + 100
    (7, Q, "Yes", "code_reasoning", "c1.png", "yes"),
    (8, Q, "No", "code_reasoning", "c1.png", "no"),
    (9, Q, "Yes", "code_reasoning", "c2.png", "YES"),
    (10, Q, "No", "code_reasoning", "c2.png", "No"),
    # numerical_calculation: one of two right -> 50 + 0
    (11, Q, "Yes", "numerical_calculation", "n1.png", "Yes"),
    (12, Q, "No", "numerical_calculation", "n1.png", "Yes"),
]


def write(path, rows, columns=COLUMNS):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("Yes.", "Yes"),
        ("No, it is not.", "No"),
        ("The answer is yes!", "Yes"),
        ("yes and no", None),
        ("Yesterday", None),
        ("(no)", "No"),
        ("", None),
    ],
)
def test_yes_no_extraction_follows_vlmevalkit(prediction, expected):
    assert extract_yes_no(prediction).letter == expected


def test_mme_rating_matches_hand_computed_scores(tmp_path):
    benchmark = read_benchmark(write(tmp_path / "MME.tsv", ROWS))
    assert benchmark.kind == "yorn" and all(not item.issues for item in benchmark.items)
    result = rate_mme(benchmark, score_yes_no_rows(benchmark))
    ocr = result.subtasks["OCR"]
    assert (ocr.acc, ocr.acc_plus, ocr.score) == (75.0, 50.0, 125.0)
    assert result.subtasks["artwork"].score == 0.0
    assert result.subtasks["code_reasoning"].score == 200.0
    assert result.subtasks["numerical_calculation"].score == 50.0
    assert result.perception == 125.0 and result.cognition == 250.0 and result.total == 375.0
    assert result.no_answer == 2
    assert "celebrity" in result.missing and "OCR" not in result.missing


def test_score_cli_writes_vlmevalkit_score_csv_and_summary(tmp_path, capsys):
    path = write(tmp_path / "MME.tsv", ROWS)
    assert score_main([str(path), "--prompt-style", "vlmevalkit"]) == 0
    with (tmp_path / "MME_score.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["perception"]) == 125.0 and float(row["reasoning"]) == 250.0 and float(row["OCR"]) == 125.0
    summary = (tmp_path / "summary_mme.md").read_text()
    assert "| MME | vlmevalkit | 125.00 | 250.00 | 375.00 |" in summary
    assert "| OCR | perception | 75.00 | 50.00 | 125.00 |" in summary
    assert "| MME | vlmevalkit |" in capsys.readouterr().out


def test_bad_rows_name_the_file_row_and_column(tmp_path, caplog):
    rows = [
        (1, Q, "Yes", "OCR", "o1.jpg", "Yes"),
        (2, Q, "No", "weather", "o1.jpg", "No"),
        (3, Q, "Maybe", "OCR", "o2.jpg", "Yes"),
        (4, Q, "No", "OCR", "o2.jpg", ""),
    ]
    path = write(tmp_path / "MME.tsv", rows)
    with caplog.at_level(logging.WARNING):
        result = score_file(path)
    text = caplog.text
    assert "MME.tsv row 2 (index 2): column 'category' names 'weather', not an MME subtask" in text
    assert "MME.tsv row 3 (index 3): column 'answer' is 'Maybe', not Yes or No" in text
    assert "MME.tsv row 4 (index 4): column 'prediction' is empty" in text
    assert result.rows_with_issues == 3
    # OCR keeps its three rows: one right (o1's first), o1 has one question here, o2 none right
    ocr = result.subtasks["OCR"]
    assert (ocr.questions, ocr.right) == (3, 1) and ocr.acc_plus == 50.0


def test_missing_pair_column_is_refused_naming_the_file(tmp_path):
    path = write(tmp_path / "MME.tsv", [row[:4] + row[5:] for row in ROWS], ["index", "question", "answer", "category", "prediction"])
    with pytest.raises(BenchmarkFileError, match=r"MME.tsv: MME needs the column 'image_path'"):
        score_file(path)
