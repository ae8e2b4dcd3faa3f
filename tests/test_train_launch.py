"""Launch-time behaviour of the training entry point: bad paths, GPU-only flags on CPU, wandb offline."""

import subprocess
import sys
from pathlib import Path

import pytest
from training_helpers import common_flags

from llava.train import model_setup
from llava.train.arguments import normalize_argv
from llava.train.train import train

REPO = Path(__file__).resolve().parents[1]


def replace_flag(flags, name, value):
    flags = list(flags)
    flags[flags.index(name) + 1] = value
    return flags


@pytest.mark.parametrize("flag", ["--data_path", "--image_folder", "--vision_tower", "--model_name_or_path"])
def test_missing_path_fails_before_any_model_is_loaded_naming_the_flag(flag, tiny_assets, tiny_data, tmp_path,
                                                                       monkeypatch):
    def must_not_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the paths were checked")

    monkeypatch.setattr(model_setup.AutoModelForCausalLM, "from_pretrained", must_not_load)
    monkeypatch.setattr(model_setup.AutoTokenizer, "from_pretrained", must_not_load)
    flags = replace_flag(common_flags(tiny_assets, tiny_data, tmp_path, stage=2), flag, str(tmp_path / "nope" / "x"))
    with pytest.raises(FileNotFoundError, match=flag):
        train(flags)


def test_gpu_only_flags_degrade_on_cpu_with_one_warning(caplog):
    argv = ["--bf16", "True", "--tf32", "True", "--fp16=False", "--output_dir", "x"]
    with caplog.at_level("WARNING", logger="llava.train.arguments"):
        degraded = normalize_argv(argv, cuda_available=False)
    assert not {"--bf16", "--tf32", "--fp16", "--fp16=False"} & set(degraded)
    assert degraded[:2] == ["--output_dir", "x"]
    assert len(caplog.records) == 1 and "--bf16 --tf32" in caplog.records[0].getMessage()
    assert normalize_argv(argv, cuda_available=True) == argv


def test_renamed_transformers4_flags_are_translated():
    assert normalize_argv(["--evaluation_strategy", "no", "--warmup_ratio", "0.03"], cuda_available=True) == [
        "--eval_strategy", "no", "--warmup_steps", "0.03"]


def test_report_to_wandb_works_offline(tiny_assets, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    flags = replace_flag(common_flags(tiny_assets, tiny_data, tmp_path / "out", stage=1), "--report_to", "wandb")
    train(flags)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_runnable_as_a_script_by_path(tiny_assets, tiny_data, tmp_path):
    flags = common_flags(tiny_assets, tiny_data, tmp_path, stage=1)
    result = subprocess.run([sys.executable, "llava/train/train.py", *flags, "--bf16", "True"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "mm_projector.bin").exists()
