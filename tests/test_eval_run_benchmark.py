"""End to end on the untrained tiny LLaVA: batched answering, resume, sharding, outputs, bad images."""

import copy
import csv
import shutil
from functools import partial
from pathlib import Path

import pytest
import torch

from llava.eval.benchmark import expand_benchmark, read_benchmark
from llava.eval.generation import load_model
from llava.eval.run_benchmark import answer_benchmark, answered_rows, chunk_path, evaluate, main

BENCH = Path(__file__).parent / "fixtures" / "eval" / "bench"
FILES = [BENCH / "MMMB_en.tsv", BENCH / "MMMB_cn.tsv", BENCH / "MMBench_dev_ru.tsv"]


def run(checkpoint, out, files, *extra):
    argv = ["--model-path", str(checkpoint), "--files", *map(str, files), "--output-dir", str(out)]
    return main([*argv, "--batch-size", "4", "--max-new-tokens", "3", "--device", "cpu", *extra])


def read_tsv(path):
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


@pytest.fixture(scope="module")
def finished_run(tiny_llava_checkpoint, tmp_path_factory):
    """One full run through the command line: every file answered, merged, scored and summarised."""
    out = tmp_path_factory.mktemp("eval_out")
    assert run(tiny_llava_checkpoint, out, FILES) == 0
    return out


@pytest.fixture(scope="module")
def tiny_model(tiny_llava_checkpoint):
    """The tiny checkpoint loaded once for the tests that drive `evaluate` directly."""
    return load_model(str(tiny_llava_checkpoint), device="cpu", max_new_tokens=3)


def evaluate_files(model, out, files, **options):
    benchmarks = [read_benchmark(path) for path in files]
    return evaluate(benchmarks, out, lambda: model, model_name="tiny", **{"batch_size": 4, **options})


def test_every_row_is_answered_and_merged_in_file_order(finished_run):
    rows = read_tsv(finished_run / "MMBench_dev_ru.tsv")
    assert [row["index"] for row in rows] == ["1", "1000001", "2000001", "2", "1000002"]
    assert {"prediction", "extracted", "image_index"} <= set(rows[0])
    assert "image" not in rows[0]


def test_scores_and_reports_are_written(finished_run):
    for name in ("MMMB_en", "MMMB_cn", "MMBench_dev_ru"):
        acc = read_tsv(finished_run / f"{name}_acc.csv")  # one column only: tab-split is harmless
        assert "Overall" in next(iter(acc[0]))
    assert "| Benchmark | en | zh |" in (finished_run / "summary_mmmb.md").read_text(encoding="utf-8")
    assert "| Benchmark | ru |" in (finished_run / "summary_mmbench.md").read_text(encoding="utf-8")
    for name in ("radar_mmmb.png", "radar_mmbench.png"):
        assert (finished_run / name).read_bytes()[:4] == b"\x89PNG"


def test_rows_whose_image_does_not_decode_are_scored_wrong_with_the_reason(finished_run):
    rows = {row["index"]: row for row in read_tsv(finished_run / "MMMB_cn_result.tsv")}
    for key in ("4", "5"):
        assert rows[key]["hit"] == "0"
        assert rows[key]["issue"] == "image data is not a readable image"
    assert "image" not in rows["1"]["issue"]


def unfinished_copy(finished_run, out):
    """`finished_run` as a run killed after answering, before merging: chunk files, no merged outputs."""
    shutil.copytree(finished_run, out)
    for path in out.iterdir():
        if path.is_file():
            path.unlink()
    return out


def test_rerun_answers_only_the_missing_indices(finished_run, tiny_model, tmp_path):
    out = unfinished_copy(finished_run, tmp_path / "out")
    chunk = chunk_path(out, "MMMB_en", 1, 0)
    lines = chunk.read_text(encoding="utf-8").splitlines(keepends=True)
    chunk.write_text("".join(lines[:-2]) + lines[-2][:10], encoding="utf-8")  # two rows lost, one torn
    assert evaluate_files(tiny_model, out, [BENCH / "MMMB_en.tsv"]) is not None
    keys = [row["index"] for row in read_tsv(chunk)]
    assert sorted(keys) == ["1", "2", "3", "4", "5"]
    assert [row["index"] for row in read_tsv(out / "MMMB_en.tsv")] == ["1", "2", "3", "4", "5"]


def test_shards_are_merged_only_once_every_chunk_is_done(tiny_model, tmp_path):
    files = [BENCH / "MMMB_en.tsv"]
    assert evaluate_files(tiny_model, tmp_path, files, num_chunks=2, chunk_idx=0) is None
    assert sorted(answered_rows(tmp_path, "MMMB_en")) == ["1", "2", "3"]
    assert not (tmp_path / "MMMB_en.tsv").exists()
    assert evaluate_files(tiny_model, tmp_path, files, num_chunks=2, chunk_idx=1) is not None
    assert len(read_tsv(tmp_path / "MMMB_en.tsv")) == 5
    assert (tmp_path / "MMMB_en_acc.csv").exists()


def test_nothing_left_to_answer_never_loads_the_model(finished_run, tmp_path):
    def refuse():
        raise AssertionError("the model was loaded although every row was answered")

    out = unfinished_copy(finished_run, tmp_path / "out")
    benchmarks = [read_benchmark(path) for path in FILES]
    assert evaluate(benchmarks, out, refuse, model_name="tiny") is not None
    assert (out / "MMMB_en.tsv").is_file()


def test_missing_benchmark_file_stops_with_its_name(tiny_llava_checkpoint, tmp_path, capsys):
    assert run(tiny_llava_checkpoint, tmp_path, [tmp_path / "MMMB_tr.tsv"]) == 2
    assert "MMMB_tr.tsv does not exist" in capsys.readouterr().err


def test_batch_of_four_gives_each_row_the_answer_it_gets_alone(tiny_model, tmp_path):
    from llava.inference import generate_batch

    model = copy.deepcopy(tiny_model.model)
    torch.manual_seed(1)
    with torch.no_grad():  # untrained weights only ever print newlines; spread them to get varied text
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    generate = partial(
        generate_batch, model, tiny_model.tokenizer, tiny_model.image_processor, max_new_tokens=4
    )
    bench = read_benchmark(BENCH / "MMBench_dev_ru.tsv")
    answer_benchmark(bench, generate, tmp_path / "b4.tsv", bench.items, batch_size=4)
    answer_benchmark(bench, generate, tmp_path / "b1.tsv", bench.items, batch_size=1)
    batched = {row["index"]: row["prediction"] for row in read_tsv(tmp_path / "b4.tsv")}
    single = {row["index"]: row["prediction"] for row in read_tsv(tmp_path / "b1.tsv")}
    assert batched == single
    assert len(set(single.values())) == len(single)  # answers differ, so a row mix-up would show


def test_quickstart_easyvqa_benchmarks_in_six_languages(tiny_model, tmp_path):
    from playground.easyvqa.build import BuildConfig, build

    data = tmp_path / "easyvqa"
    build(BuildConfig(out=data, seed=0, num_stage1=3, num_stage2=6, num_test_images=3))
    files = expand_benchmark("MMMB", data) + expand_benchmark("MMBench_dev_ar", data)
    results = evaluate_files(tiny_model, tmp_path / "out", files, batch_size=8)
    units = {(r.name, r.language): (r.rule, r.overall.total) for r in results}
    assert units[("MMMB_cn", "zh")] == ("pair", 3)  # one yes/no image (two rows), one colour, one shape
    assert units[("MMBench_dev_ar", "ar")] == ("circular", 4)
    assert len(units) == 7
    markdown = (tmp_path / "out" / "summary_mmmb.md").read_text(encoding="utf-8")
    assert "| Benchmark | en | zh | pt | ar | tr | ru |" in markdown
