"""No silent overwrites: finished training and evaluation folders are refused without
`--overwrite_output_dir`, resume is untouched, `--fast` has its own folder, summaries are per
benchmark and `llava.eval.score` merges into them."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import stage1_resume_flags
from transformers import TrainerCallback

from llava.eval.run_benchmark import chunk_path
from llava.eval.run_benchmark import main as run_benchmark
from llava.eval.score import main as score
from llava.train.output_guard import finished_training_files
from llava.train.preflight import LaunchError
from llava.train.train import main as train_main
from llava.train.train import train

EVAL = Path(__file__).parent / "fixtures" / "eval"


class CountSteps(TrainerCallback):
    def __init__(self):
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


def copy_run(reference: Path, out: Path) -> Path:
    shutil.copytree(reference, out)
    return out


def test_training_into_a_finished_folder_is_refused_naming_folder_and_flag(
    stage1_reference_run, tiny_assets, tiny_data, tmp_path, capsys
):
    out = copy_run(stage1_reference_run, tmp_path / "run")
    assert "trainer_state.json" in finished_training_files(str(out))
    with pytest.raises(SystemExit) as stop:
        train_main(stage1_resume_flags(tiny_assets, tiny_data, out))
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert str(out) in message and "--overwrite_output_dir" in message and "already holds a finished run" in message
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in stage1_reference_run.iterdir())


def test_overwrite_flag_starts_over_instead_of_resuming(stage1_reference_run, tiny_assets, tiny_data, tmp_path):
    out = copy_run(stage1_reference_run, tmp_path / "run")
    steps = CountSteps()
    trainer = train(stage1_resume_flags(tiny_assets, tiny_data, out, "--overwrite_output_dir", "True"), callbacks=[steps])
    assert steps.steps == 4 and trainer.state.global_step == 4  # all four steps again, not a resume at step 4
    assert "mm_projector.bin" in finished_training_files(str(out))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]  # the new run's


def test_unfinished_run_still_auto_resumes(stage1_reference_run, tiny_assets, tiny_data, tmp_path):
    out = copy_run(stage1_reference_run, tmp_path / "run")
    shutil.rmtree(out / "checkpoint-4")
    for path in out.iterdir():  # what a run killed after its checkpoint at step 2 leaves
        if path.is_file():
            path.unlink()
    assert finished_training_files(str(out)) == []
    steps = CountSteps()
    train(stage1_resume_flags(tiny_assets, tiny_data, out), callbacks=[steps])
    assert steps.steps == 2  # resumed at step 2


def test_explicit_resume_of_a_finished_run_is_not_refused(stage1_reference_run, tiny_assets, tiny_data, tmp_path):
    out = copy_run(stage1_reference_run, tmp_path / "run")
    steps = CountSteps()
    flags = stage1_resume_flags(tiny_assets, tiny_data, out, "--resume_from_checkpoint", str(out / "checkpoint-2"))
    train(flags, callbacks=[steps])
    assert steps.steps == 2


def test_overwrite_and_resume_together_are_refused(stage1_reference_run, tiny_assets, tiny_data, tmp_path):
    out = copy_run(stage1_reference_run, tmp_path / "run")
    flags = stage1_resume_flags(
        tiny_assets, tiny_data, out, "--overwrite_output_dir", "True", "--resume_from_checkpoint", "True"
    )
    with pytest.raises(LaunchError, match="contradicts --resume_from_checkpoint"):
        train(flags)
    assert (out / "checkpoint-4").is_dir()


def test_fast_quickstart_has_its_own_folder_unless_out_is_given(monkeypatch, tmp_path):
    from playground.quickstart import cli
    from playground.quickstart.settings import FAST
    from playground.quickstart.stages import common_flags

    chosen = []
    monkeypatch.setattr(cli, "run", lambda settings, out_dir, ablation=False: chosen.append(out_dir))
    assert cli.main(["--fast"]) == 0 and cli.main([]) == 0 and cli.main(["--fast", "--out", str(tmp_path)]) == 0
    assert chosen == [Path("outputs/quickstart-fast"), Path("outputs/quickstart"), tmp_path]
    flags = common_flags(FAST, tmp_path, 10, 2)  # a rerun of the quickstart replaces its own stages
    assert flags[flags.index("--overwrite_output_dir") + 1] == "True"


@pytest.fixture
def predictions(tmp_path):
    for name in ("MMBench_dev_en.tsv", "MMBench_dev_cn.tsv", "MMMB_ru.tsv", "MMMB_ar.tsv"):
        shutil.copy(EVAL / "predictions" / name, tmp_path / name)
    return tmp_path


def summary_languages(folder: Path, slug: str) -> list[str]:
    record = json.loads((folder / f"summary_{slug}.json").read_text(encoding="utf-8"))
    return [entry["language"] for entry in record["results"]]


def test_score_merges_file_b_into_the_summary_of_file_a(predictions):
    assert score([str(predictions / "MMMB_ru.tsv")]) == 0
    assert summary_languages(predictions, "mmmb") == ["ru"]
    assert score([str(predictions / "MMMB_ar.tsv")]) == 0
    assert summary_languages(predictions, "mmmb") == ["ru", "ar"]
    assert "| MMMB (pair) | 50.00 | 66.67 |" in (predictions / "summary_mmmb.md").read_text(encoding="utf-8")
    assert score([str(predictions / "MMMB_ru.tsv"), "--rule", "vanilla"]) == 0  # ru again: replaced, ar kept
    record = json.loads((predictions / "summary_mmmb.json").read_text(encoding="utf-8"))
    assert [(e["language"], e["rule"]) for e in record["results"]] == [("ru", "vanilla"), ("ar", "pair")]
    csv_languages = {line.split(",")[2] for line in (predictions / "summary_mmmb.csv").read_text().splitlines()[1:]}
    assert csv_languages == {"ru", "ar"}


def test_two_benchmarks_in_one_folder_keep_their_own_summary_and_radar(predictions):
    assert score([str(predictions / "MMMB_ru.tsv")]) == 0
    mmmb = (predictions / "summary_mmmb.md").read_bytes(), (predictions / "radar_mmmb.png").read_bytes()
    assert score([str(predictions / "MMBench_dev_en.tsv")]) == 0
    assert ((predictions / "summary_mmmb.md").read_bytes(), (predictions / "radar_mmmb.png").read_bytes()) == mmmb
    assert summary_languages(predictions, "mmbench") == ["en"]
    assert (predictions / "radar_mmbench.png").read_bytes()[:4] == b"\x89PNG"
    assert not (predictions / "summary.md").exists()


def test_score_refuses_to_mix_another_models_summary(predictions, capsys):
    assert score([str(predictions / "MMMB_ru.tsv"), "--model-name", "model-a"]) == 0
    assert score([str(predictions / "MMMB_ar.tsv"), "--model-name", "model-b"]) == 2
    assert "summarises model 'model-a', not 'model-b'" in capsys.readouterr().err
    assert summary_languages(predictions, "mmmb") == ["ru"]


def eval_argv(checkpoint, out, *extra):
    files = [str(EVAL / "bench" / "MMMB_en.tsv")]
    return ["--model-path", str(checkpoint), "--files", *files, "--output-dir", str(out), "--batch-size", "4",
            "--max-new-tokens", "3", "--device", "cpu", *extra]


def test_evaluation_into_a_finished_folder_is_refused_then_overwritten(tiny_llava_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    assert run_benchmark(eval_argv(tiny_llava_checkpoint, out)) == 0
    chunk = chunk_path(out, "MMMB_en", 1, 0)
    planted = chunk.read_text(encoding="utf-8").replace("\n1\t", "\n1\tPLANTED-", 1)
    chunk.write_text(planted, encoding="utf-8")  # a row of the earlier run, which the overwrite must not reuse
    merged = (out / "MMMB_en.tsv").read_bytes()
    capsys.readouterr()
    assert run_benchmark(eval_argv(tiny_llava_checkpoint, out)) == 2
    message = capsys.readouterr().err
    assert str(out) in message and "MMMB_en.tsv" in message and "--overwrite_output_dir" in message
    assert (out / "MMMB_en.tsv").read_bytes() == merged and "PLANTED-" in chunk.read_text(encoding="utf-8")
    assert run_benchmark(eval_argv(tiny_llava_checkpoint, out, "--overwrite_output_dir")) == 0
    assert "PLANTED-" not in chunk.read_text(encoding="utf-8")
    assert (out / "MMMB_en.tsv").is_file() and summary_languages(out, "mmmb") == ["en"]
