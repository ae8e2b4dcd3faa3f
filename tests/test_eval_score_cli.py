"""`python -m llava.eval.score`: re-scoring prediction files with no model."""

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llava.eval.reports import plot_radar
from llava.eval.score import main

FIXTURES = Path(__file__).parent / "fixtures" / "eval" / "predictions"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def predictions(tmp_path):
    for name in ("MMBench_dev_en.tsv", "MMBench_dev_cn.tsv", "MMMB_ru.tsv", "MMMB_ar.tsv"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    return tmp_path


def read_csv(path, delimiter=","):
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream, delimiter=delimiter))


def test_module_entry_point_writes_acc_csv_with_overall_beside_each_file(predictions):
    files = sorted(str(p) for p in predictions.glob("*.tsv"))
    completed = subprocess.run(
        [sys.executable, "-m", "llava.eval.score", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert read_csv(predictions / "MMBench_dev_en_acc.csv")[0]["Overall"] == "0.400000"
    assert read_csv(predictions / "MMMB_ru_acc.csv")[0]["Overall"] == "0.666667"
    assert "| Benchmark | en | zh | ar | ru |" in completed.stdout


def test_acc_csv_has_split_overall_then_l2_categories_then_categories(predictions):
    main([str(predictions / "MMBench_dev_en.tsv")])
    rows = read_csv(predictions / "MMBench_dev_en_acc.csv")
    assert list(rows[0]) == [
        "split",
        "Overall",
        "perception",
        "reasoning",
        "color",
        "count",
        "knowledge",
        "shape",
        "time",
    ]
    assert rows[0]["split"] == "dev" and rows[0]["perception"] == "0.333333"


def test_result_tsv_keeps_the_prediction_and_adds_the_extracted_letter(predictions):
    main([str(predictions / "MMBench_dev_cn.tsv")])
    rows = read_csv(predictions / "MMBench_dev_cn_result.tsv", delimiter="\t")
    by_index = {row["index"]: row for row in rows}
    assert by_index["1"]["prediction"] == "答案是B" and by_index["1"]["extracted"] == "B"
    assert by_index["3"]["extracted"] == "" and by_index["3"]["extract_method"] == "refusal"
    assert [row["hit"] for row in rows] == ["1", "1", "1", "1", "0"]


def test_summary_markdown_has_languages_as_columns(predictions):
    main([str(p) for p in sorted(predictions.glob("*.tsv"))])
    mmbench = (predictions / "summary_mmbench.md").read_text(encoding="utf-8")
    mmmb = (predictions / "summary_mmmb.md").read_text(encoding="utf-8")
    assert "| MMBench (circular) | 40.00 | 66.67 |" in mmbench and "MMMB" not in mmbench
    assert "| MMMB (pair) | 50.00 | 66.67 |" in mmmb and "MMBench" not in mmmb
    assert "| perception | 33.33 | 100.00 |" in mmbench


def test_radar_png_is_written_beside_the_summary(predictions):
    main([str(p) for p in sorted(predictions.glob("*.tsv"))] + ["--summary-dir", str(predictions / "out")])
    for name in ("radar_mmbench.png", "radar_mmmb.png"):
        assert (predictions / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (predictions / "out" / "radar.png").exists()


def test_radar_draws_several_models(tmp_path):
    series = {"MMMB": {"model-a": {"en": 70.0, "zh": 68.1, "ru": 66.3}, "model-b": {"en": 67.1, "zh": 58.8}}}
    plot_radar(series, tmp_path / "radar.png")
    assert (tmp_path / "radar.png").stat().st_size > 1000


def test_rule_flag_applies_to_every_file(predictions):
    main([str(predictions / "MMMB_ru.tsv"), "--rule", "vanilla"])
    assert read_csv(predictions / "MMMB_ru_acc.csv")[0]["Overall"] == "0.833333"


def test_data_root_recovers_mmmb_pairs_for_files_without_images(tmp_path):
    rows = read_csv(FIXTURES / "MMMB_ru.tsv", delimiter="\t")
    columns = [c for c in rows[0] if c != "image"]
    target = tmp_path / "preds" / "Parrot_MMMB_ru.tsv"
    target.parent.mkdir()
    with target.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, columns, delimiter="\t", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    data_root = tmp_path / "data"
    data_root.mkdir()
    shutil.copy(FIXTURES / "MMMB_ru.tsv", data_root / "mmmb_ru.tsv")
    main([str(target), "--data-root", str(data_root)])
    assert read_csv(tmp_path / "preds" / "Parrot_MMMB_ru_acc.csv")[0]["Overall"] == "0.666667"


def test_missing_predictions_file_exits_with_a_message_naming_it(tmp_path, capsys):
    assert main([str(tmp_path / "MMMB_en.tsv")]) == 2
    assert "MMMB_en.tsv does not exist" in capsys.readouterr().err


def test_vlmevalkit_xlsx_predictions_are_scored_like_tsv(tmp_path):
    import pandas as pd

    frame = pd.read_csv(FIXTURES / "MMBench_dev_en.tsv", sep="\t", keep_default_na=False)
    frame.to_excel(tmp_path / "Parrot_MMBench_dev_en.xlsx", index=False)  # VLMEvalKit's default format
    main([str(tmp_path / "Parrot_MMBench_dev_en.xlsx")])
    assert read_csv(tmp_path / "Parrot_MMBench_dev_en_acc.csv")[0]["Overall"] == "0.400000"


def test_predictions_with_tabs_and_line_breaks_survive_the_result_file(tmp_path):
    header = "index\tquestion\tA\tB\tanswer\tprediction\n"
    (tmp_path / "custom_en.tsv").write_text(
        header + '1\tq?\tred\tblue\tB\t"The answer:\r\n\tB"\n', encoding="utf-8"
    )
    main([str(tmp_path / "custom_en.tsv")])
    (row,) = read_csv(tmp_path / "custom_en_result.tsv", delimiter="\t")
    assert (row["prediction"], row["extracted"], row["hit"]) == ("The answer:\n\tB", "B", "1")
