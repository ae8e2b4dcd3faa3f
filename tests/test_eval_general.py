"""The paper's general benchmarks end to end: each layout answered (batched) on the tiny checkpoint,
scored by its rule, with the prompt style recorded in the summary and on the model card."""

import json
import shutil

import pytest
from general_bench_files import LAYOUTS, write_layout

from llava.eval.benchmark import GENERAL_SET, BenchmarkFileError, expand_benchmark, read_benchmark
from llava.eval.run_benchmark import main as run_main


def test_general_names_expand_to_vlmevalkit_files(tmp_path):
    for name in LAYOUTS:
        write_layout(tmp_path / "general", name)
    assert [p.stem for p in expand_benchmark("general", tmp_path)] == list(GENERAL_SET)
    assert [p.name for p in expand_benchmark("ScienceQA_IMG", tmp_path)] == ["ScienceQA_TEST.tsv"]
    assert [p.name for p in expand_benchmark("MMBench_CN", tmp_path)] == ["MMBench_dev_cn.tsv"]
    with pytest.raises(BenchmarkFileError, match="MMMB_en.tsv, MMMB_cn.tsv"):
        expand_benchmark("paper", tmp_path)
    write_layout(tmp_path / "copy", "MMStar")
    with pytest.raises(BenchmarkFileError, match="MMStar.tsv is in .* twice"):
        expand_benchmark("MMStar", tmp_path)


def test_layouts_read_without_problems(tmp_path):
    for name in LAYOUTS:
        benchmark = read_benchmark(write_layout(tmp_path, name))
        assert all(not item.issues for item in benchmark.items), name
    star = read_benchmark(tmp_path / "MMStar.tsv").items[1]
    assert star.get("l2-category") == "numeric"  # MMStar spells it l2_category
    sqa = read_benchmark(tmp_path / "ScienceQA_TEST.tsv")
    assert list(sqa.items[0].options) == list("ABCDE") and list(sqa.items[1].options) == ["A", "B"]


@pytest.mark.parametrize("style", ["ours", "vlmevalkit", "parrot"])
def test_each_general_benchmark_answers_and_scores_end_to_end(tiny_llava_checkpoint, tmp_path, style):
    files = [write_layout(tmp_path / "data", name) for name in LAYOUTS]
    out = tmp_path / "out"
    checkpoint = shutil.copytree(tiny_llava_checkpoint, tmp_path / "ckpt")  # its card gets the scores
    argv = ["--model-path", str(checkpoint), "--files", *map(str, files), "--output-dir", str(out)]
    argv += ["--batch-size", "4", "--max-new-tokens", "2", "--device", "cpu", "--prompt-style", style]
    assert run_main(argv) == 0
    for name in LAYOUTS:
        assert (out / f"{name}.tsv").is_file() and (out / f"{name}_result.tsv").is_file()
    mme = json.loads((out / "summary_mme.json").read_text())
    (entry,) = mme["results"]
    assert entry["prompt_style"] == style and set(entry["subtasks"]) == {"color", "OCR", "numerical_calculation"}
    assert sum(t["questions"] for t in entry["subtasks"].values()) == 6
    star = json.loads((out / "summary_mmstar.json").read_text())["results"][0]
    assert star["prompt_style"] == style and star["rule"] == "vanilla" and star["overall"][1] == 3
    assert set(star["by_l2_category"]) == {"image style", "numeric", "geometry"}
    cn = json.loads((out / "summary_mmbench.json").read_text())["results"][0]
    assert cn["rule"] == "circular" and cn["language"] == "zh" and cn["overall"][1] == 1
    assert f"| MMStar | en | vanilla | {style} |" in (out / "summary_mmstar.md").read_text()
    card = (checkpoint / "README.md").read_text()
    assert f"MME perception (mme rule, {style} prompt)" in card and f"MMStar (vanilla rule, {style} prompt)" in card
