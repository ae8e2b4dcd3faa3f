"""`-h`/`--help` on every launcher prints its usage (what it runs, the variables it reads, the hardware it
is tuned for) and exits 0 without checking, installing or starting anything (scripts/help.sh)."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
LAUNCHERS = sorted([*SCRIPTS.glob("parrot/*.sh"), *SCRIPTS.glob("v1_5/*.sh")])
# Names each launcher's usage must mention: what it runs and the variables it reads.
MENTIONS = {
    "parrot/pretrain.sh": ["PRETRAIN_DATA", "PRETRAIN_IMAGES", "VISION_TOWER", "ZeRO-2"],
    "parrot/finetune.sh": ["FINETUNE_DATA", "PRETRAIN_MM_MLP_ADAPTER", "PROJECTOR", "ZeRO-3"],
    "parrot/pretrain_14b.sh": ["Qwen1.5-14B-Chat", "pretrain.sh"],
    "parrot/finetune_14b.sh": ["Qwen1.5-14B-Chat", "finetune.sh"],
    "parrot/pretrain_1node.sh": ["NNODES", "pretrain.sh"],
    "parrot/finetune_1node.sh": ["NNODES=1", "finetune.sh"],
    "parrot/finetune_lora.sh": ["LoRA", "finetune.sh", "LEARNING_RATE"],
    "v1_5/pretrain.sh": ["DATA_ROOT", "PRETRAIN_DATA", "scripts/parrot/pretrain.sh"],
    "v1_5/finetune.sh": ["DATA_ROOT", "FINETUNE_DATA", "scripts/parrot/finetune.sh"],
}


def fake_deepspeed(tmp_path: Path) -> tuple[dict, Path]:
    """An environment whose `deepspeed` and `pip` only leave a marker file, and no data variables."""
    bin_dir, marker = tmp_path / "bin", tmp_path / "started"
    bin_dir.mkdir()
    for name in ("deepspeed", "pip"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "$0 $@" >> {marker}\n')
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_DATA", "_IMAGES")) and k != "DRY_RUN"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env, marker


def test_every_launcher_is_listed():
    assert sorted(str(p.relative_to(SCRIPTS)) for p in LAUNCHERS) == sorted(MENTIONS)


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("script", LAUNCHERS, ids=lambda p: str(p.relative_to(SCRIPTS)))
def test_launcher_help_prints_usage_and_starts_nothing(script, flag, tmp_path):
    env, marker = fake_deepspeed(tmp_path)
    result = subprocess.run(["bash", str(script), flag], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no preflight ran (it would name a missing PRETRAIN_DATA/FINETUNE_DATA)
    assert not marker.exists()
    text = result.stdout
    assert not text.startswith("#!") and "\n# " not in text  # the header as prose, comment marks removed
    assert "parrot_help" not in text and "help-footer" not in text
    for word in MENTIONS[str(script.relative_to(SCRIPTS))]:
        assert word in text, f"{script.name} --help does not mention {word}"
    assert "A100" in text or "GPUs" in text  # the hardware it is tuned for
    assert "NNODES" in text and "GPUS_PER_NODE" in text and "DRY_RUN=1" in text  # lib.sh's variables


def test_without_help_the_same_launcher_still_runs_its_preflight(tmp_path):
    env, marker = fake_deepspeed(tmp_path)
    result = subprocess.run(["bash", str(SCRIPTS / "parrot/pretrain_1node.sh")], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1 and "preflight" in result.stderr and not marker.exists()


def test_help_among_train_flags_is_still_help(tmp_path):
    env, marker = fake_deepspeed(tmp_path)
    result = subprocess.run(["bash", str(SCRIPTS / "parrot/finetune.sh"), "--learning_rate", "1e-5", "--help"],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "FINETUNE_DATA" in result.stdout and not marker.exists()


def test_run_tests_help_skips_set_up_and_pytest(tmp_path):
    env, marker = fake_deepspeed(tmp_path)
    env["PYTHON"] = str(tmp_path / "bin" / "pip")  # were it run, the set-up and pytest would leave the marker
    result = subprocess.run(["bash", str(SCRIPTS / "run_tests.sh"), "--help"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and "SKIP_INSTALL" in result.stdout and "pytest" in result.stdout
    assert not marker.exists()


def test_quickstart_help_skips_the_set_up(tmp_path):
    env, marker = fake_deepspeed(tmp_path)
    env["PYTHON"] = str(tmp_path / "bin" / "pip")  # records what the script would run with python
    result = subprocess.run(["bash", str(SCRIPTS / "quickstart.sh"), "--help"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0
    assert marker.read_text().split("\n")[:-1] == [f"{env['PYTHON']} -m playground.quickstart --help"]
