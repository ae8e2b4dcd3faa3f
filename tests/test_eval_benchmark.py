"""Reading VLMEvalKit TSVs: options, image references, bad rows, missing files, name expansion."""

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from llava.eval.benchmark import BenchmarkFileError, ImageLoadError, expand_benchmark, read_benchmark

FIXTURES = Path(__file__).parent / "fixtures" / "eval" / "predictions"


def test_options_are_the_non_empty_letter_columns_in_order():
    bench = read_benchmark(FIXTURES / "MMBench_dev_en.tsv")
    by_key = {item.key: item for item in bench.items}
    assert by_key["1"].options == {"A": "red", "B": "blue", "C": "green", "D": "yellow"}
    assert by_key["3"].options == {"A": "apple", "B": "car"}
    assert by_key["2"].hint == "Count the animals."


def test_image_reference_points_at_the_row_that_holds_the_image():
    bench = read_benchmark(FIXTURES / "MMMB_ru.tsv")
    keys = {item.key: item.image_key for item in bench.items}
    assert keys["1"] == 1 and keys["2"] == 1
    assert keys["3"] == 3 and keys["4"] == 3


def test_rows_repeating_the_same_image_data_share_one_pair_key():
    bench = read_benchmark(FIXTURES / "MMMB_ru.tsv")
    keys = {item.key: item.image_key for item in bench.items}
    assert keys["5"] == keys["6"] == 5


def test_load_image_decodes_base64_through_a_reference():
    bench = read_benchmark(FIXTURES / "MMMB_ru.tsv")
    referencing_row = next(item for item in bench.items if item.key == "2")
    image = bench.load_image(referencing_row)
    assert image.size == (4, 4) and image.getpixel((0, 0)) == (255, 0, 0)


def test_undecodable_image_raises_an_error_naming_the_row(tmp_path):
    path = tmp_path / "MMMB_en.tsv"
    path.write_text(
        "index\tquestion\tA\tB\tanswer\timage\n7\tq?\tyes\tno\tA\t" + "Z" * 100 + "\n", encoding="utf-8"
    )
    bench = read_benchmark(path)
    with pytest.raises(ImageLoadError, match=r"row 1 \(index 7\)"):
        bench.load_image(bench.items[0])


def test_image_too_thin_to_preprocess_raises_an_error_naming_the_row(tmp_path):
    thin = io.BytesIO()
    Image.new("1", (1, 100_000)).save(thin, "PNG")
    path = tmp_path / "MMMB_en.tsv"
    path.write_text(
        f"index\tquestion\tA\tB\tanswer\timage\n7\tq?\tyes\tno\tA\t{base64.b64encode(thin.getvalue()).decode()}\n",
        encoding="utf-8",
    )
    bench = read_benchmark(path)
    with pytest.raises(ImageLoadError, match=r"row 1 \(index 7\).*times longer than wide"):
        bench.load_image(bench.items[0])


def test_bad_rows_are_kept_with_their_problems_and_reading_continues():
    bench = read_benchmark(FIXTURES / "bad_rows_en.tsv")
    assert len(bench.items) == 8
    issues = {item.key: item.issues for item in bench.items}
    assert issues["1"] == [] and issues["9"] == []
    assert issues["2"] == ["malformed TSV line: 5 fields where the header has 8", "empty image cell"]
    assert issues["x"] == ["index 'x' is not an integer"]
    assert issues["6"] == ["image '99' names no row holding image data"]


def test_missing_column_is_reported_on_every_row(tmp_path):
    path = tmp_path / "MMBench_dev_en.tsv"
    path.write_text("index\tA\tB\tanswer\n1\tred\tblue\tA\n2\tred\tblue\tB\n", encoding="utf-8")
    bench = read_benchmark(path)
    assert [item.issues for item in bench.items] == [["missing column 'question'"]] * 2


def test_missing_file_stops_with_a_message_naming_it(tmp_path):
    missing = tmp_path / "MMMB_tr.tsv"
    with pytest.raises(BenchmarkFileError, match="MMMB_tr.tsv does not exist"):
        read_benchmark(missing)


def test_empty_file_stops_with_a_message_naming_it(tmp_path):
    empty = tmp_path / "MMMB_tr.tsv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(BenchmarkFileError, match="MMMB_tr.tsv is empty"):
        read_benchmark(empty)


def test_benchmark_name_expands_to_six_files_with_cn_for_chinese(tmp_path):
    for suffix in ("en", "cn", "pt", "ar", "tr", "ru"):
        (tmp_path / f"mmmb_{suffix}.tsv").write_text("index\n", encoding="utf-8")
    paths = expand_benchmark("MMMB", tmp_path)
    assert [p.name for p in paths] == [f"mmmb_{s}.tsv" for s in ("en", "cn", "pt", "ar", "tr", "ru")]


def test_mmbench_name_expands_to_the_dev_files(tmp_path):
    for suffix in ("en", "cn", "pt", "ar", "tr", "ru"):
        (tmp_path / f"MMBench_dev_{suffix}.tsv").write_text("index\n", encoding="utf-8")
    assert len(expand_benchmark("MMBench", tmp_path)) == 6
    assert [p.name for p in expand_benchmark("MMBench_dev_cn", tmp_path)] == ["MMBench_dev_cn.tsv"]


def test_expansion_names_every_missing_file(tmp_path):
    (tmp_path / "MMMB_en.tsv").write_text("index\n", encoding="utf-8")
    with pytest.raises(
        BenchmarkFileError, match="MMMB_cn.tsv, MMMB_pt.tsv, MMMB_ar.tsv, MMMB_tr.tsv, MMMB_ru.tsv"
    ):
        expand_benchmark("MMMB", tmp_path)
