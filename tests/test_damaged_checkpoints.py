"""Damaged checkpoints (issue 15): the completion marker records the size and SHA-256 of every file;
before a run resumes, the newest complete checkpoint is checked against it, and a damaged one is
reported file by file, set aside, and the previous complete one is used. The same check by hand:
`python -m llava.train.checkpoints verify DIR`."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import pytest
from distributed_utils import REPO, train_flags
from safetensors.torch import load_file

import llava.train.checkpoints as checkpoints_module
import llava.train.train as train_module
from llava.train.checkpoint_marker import COMPLETE_MARKER, checkpoint_problems, read_marker
from llava.train.checkpoints import DamagedCheckpointError, choose_resume_checkpoint
from llava.train.checkpoints import main as checkpoints_cli
from llava.train.train import main

SAVE_EVERY_2 = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"]


def stage2_flags(assets, data, out) -> list[str]:
    return train_flags(assets, data, out, stage=2, extra=SAVE_EVERY_2)


@pytest.fixture(scope="module")
def full_run(tiny_assets, tiny_data, tmp_path_factory):
    """Stage 2 (the whole model trains): checkpoint-2 and checkpoint-4, then the final model."""
    out = tmp_path_factory.mktemp("full_run")
    main(stage2_flags(tiny_assets, tiny_data, out))
    return out


def checkpoints_only(run, tmp_path):
    """A copy of the run's checkpoints, without its final output: a run that stopped after step 4."""
    copy = tmp_path / "run"
    copy.mkdir()
    for checkpoint in run.glob("checkpoint-*"):
        shutil.copytree(checkpoint, copy / checkpoint.name)
    return copy


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated safetensors": ("model.safetensors", truncate, "truncated: "),
    "missing optimizer state": ("optimizer.pt", lambda p: p.unlink(), "missing"),
    "zero-byte file": ("scheduler.pt", lambda p: p.write_bytes(b""), "empty: 0 bytes"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_each_kind_of_damage_is_found_before_loading_with_the_file_named(kind, full_run, tmp_path, caplog):
    name, damage, reason = DAMAGE[kind]
    run = checkpoints_only(full_run, tmp_path)
    damage(run / "checkpoint-4" / name)
    with caplog.at_level(logging.WARNING, logger="llava.train.checkpoints"):
        assert choose_resume_checkpoint(None, str(run), auto_resume=True) == str(run / "checkpoint-2")
    report = next(r.getMessage() for r in caplog.records if "is damaged, skipped" in r.getMessage())
    assert f"\n  {run / 'checkpoint-4' / name}: {reason}" in report


def test_damaged_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous_one(
    full_run, tiny_assets, tiny_data, tmp_path, caplog
):
    run = checkpoints_only(full_run, tmp_path)
    for name, damage, _ in DAMAGE.values():
        damage(run / "checkpoint-4" / name)
    with caplog.at_level(logging.WARNING, logger="llava.train.checkpoints"):
        main(stage2_flags(tiny_assets, tiny_data, run))
    report = next(r.getMessage() for r in caplog.records if "is damaged, skipped" in r.getMessage())
    assert [line.split(": ")[0].strip() for line in report.splitlines()[1:4]] == [
        str(run / "checkpoint-4" / name) for name in ("model.safetensors", "optimizer.pt", "scheduler.pt")]
    assert f"moved to {run / 'damaged-checkpoint-4'}" in report and f"resuming from {run / 'checkpoint-2'}" in report
    # Resumed from step 2, it ends where the uninterrupted run ended, with an intact new checkpoint-4.
    final, reference = load_file(run / "model.safetensors"), load_file(full_run / "model.safetensors")
    assert final.keys() == reference.keys()
    assert all((final[k] - reference[k]).abs().max() <= 1e-6 for k in reference)
    assert checkpoint_problems(str(run / "checkpoint-4")) == ([], True)
    assert (run / "damaged-checkpoint-4" / COMPLETE_MARKER).is_file()  # kept for inspection


def test_no_intact_checkpoint_stops_before_the_model_is_built_naming_the_file(
    full_run, tiny_assets, tiny_data, tmp_path, capsys, monkeypatch
):
    run = checkpoints_only(full_run, tmp_path)
    shutil.rmtree(run / "checkpoint-2")
    (run / "checkpoint-4" / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(train_module, "build_model", lambda *a: pytest.fail("the model was built"))
    with pytest.raises(SystemExit) as exit_info:
        main(stage2_flags(tiny_assets, tiny_data, run))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "every complete checkpoint" in err
    assert f"{run / 'checkpoint-4' / 'model.safetensors'}: empty: 0 bytes" in err
    assert "--resume_from_checkpoint False to start over" in err
    assert (run / "checkpoint-4").is_dir()  # nothing renamed when there is nothing to fall back on


def test_marker_records_size_and_sha256_of_every_file(full_run):
    checkpoint = full_run / "checkpoint-4"
    files = read_marker(str(checkpoint))["files"]
    on_disk = {p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file()}
    assert set(files) == on_disk - {COMPLETE_MARKER}
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= set(files)
    assert all(files[n]["size"] == (checkpoint / n).stat().st_size and len(files[n]["sha256"]) == 64 for n in files)


def test_explicit_damaged_checkpoint_is_refused_naming_the_file(full_run, tmp_path):
    run = checkpoints_only(full_run, tmp_path)
    (run / "checkpoint-2" / "trainer_state.json").unlink()
    with pytest.raises(DamagedCheckpointError, match=r"checkpoint-2/trainer_state.json: missing"):
        choose_resume_checkpoint(str(run / "checkpoint-2"), str(run), auto_resume=True)
    assert (run / "checkpoint-2").is_dir()


def test_marker_of_the_previous_version_is_still_resumed_checked_by_headers(full_run, tmp_path, caplog):
    run = checkpoints_only(full_run, tmp_path)
    for step in (2, 4):
        (run / f"checkpoint-{step}" / COMPLETE_MARKER).write_text(json.dumps({"global_step": step}))
    with caplog.at_level(logging.WARNING, logger="llava.train.checkpoints"):
        assert choose_resume_checkpoint(None, str(run), auto_resume=True) == str(run / "checkpoint-4")
    assert any("marked complete by an earlier version" in r.getMessage() for r in caplog.records)
    truncate(run / "checkpoint-4" / "model.safetensors")
    assert choose_resume_checkpoint(None, str(run), auto_resume=True) == str(run / "checkpoint-2")
    assert (run / "damaged-checkpoint-4").is_dir()


def test_verify_command_prints_one_line_per_damaged_file(full_run, tmp_path, capsys):
    run = checkpoints_only(full_run, tmp_path)
    checkpoint = run / "checkpoint-4"
    truncate(checkpoint / "model.safetensors")
    (checkpoint / "optimizer.pt").unlink()
    (checkpoint / "rng_state.pth").write_bytes(b"")
    for argv in (["verify", str(run)], ["verify", str(checkpoint), "--sizes-only"]):
        with pytest.raises(SystemExit) as exit_info:
            checkpoints_cli(argv)
        lines = capsys.readouterr().out.splitlines()
        assert exit_info.value.code == 1
        assert [line.split(": ")[0] for line in lines] == [
            str(checkpoint / "model.safetensors"), str(checkpoint / "optimizer.pt"), str(checkpoint / "rng_state.pth")]
    with pytest.raises(SystemExit) as exit_info:
        checkpoints_cli(["verify", str(run / "checkpoint-2")])
    assert exit_info.value.code == 0 and capsys.readouterr().out == ""


def test_verify_command_finds_changed_bytes_by_checksum_only(full_run, tmp_path, capsys):
    run = checkpoints_only(full_run, tmp_path)
    weights = run / "checkpoint-2" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one tensor byte changed
    weights.write_bytes(bytes(data))
    command = [sys.executable, "-m", "llava.train.checkpoints", "verify", str(run / "checkpoint-2")]
    by_checksum = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert by_checksum.returncode == 1
    assert by_checksum.stdout == f"{weights}: contents changed: SHA-256 differs from when written\n"
    with pytest.raises(SystemExit) as by_size:
        checkpoints_cli(command[3:] + ["--sizes-only"])
    assert by_size.value.code == 0 and capsys.readouterr().out == ""  # what --sizes-only gives up


def test_checkpoint_folder_prefix_is_the_trainers():
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    assert checkpoints_module.PREFIX_CHECKPOINT_DIR == PREFIX_CHECKPOINT_DIR


def test_unreadable_marker_counts_as_damage(full_run, tmp_path, capsys):
    run = checkpoints_only(full_run, tmp_path)
    marker = run / "checkpoint-4" / COMPLETE_MARKER
    marker.write_text(marker.read_text()[:100])  # cut mid-JSON
    with pytest.raises(SystemExit) as exit_info:
        checkpoints_cli(["verify", str(run / "checkpoint-4")])
    assert exit_info.value.code == 1 and f"{marker}: unreadable completion marker" in capsys.readouterr().out
    assert choose_resume_checkpoint(None, str(run), auto_resume=True) == str(run / "checkpoint-2")
