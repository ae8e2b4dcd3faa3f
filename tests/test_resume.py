"""Crash-safe checkpoints and resume.

The end-to-end scenario: run A trains 4 steps uninterrupted; run B, same flags and seed, is
SIGKILLed right after its first checkpoint (step 2), and a half-written checkpoint-3 (what a crash
while saving leaves) is planted beside it; B is then relaunched with the same command, auto-resumes
and must end with A's weights.
"""

import json
import shutil

import pytest
import torch
from distributed_utils import run_training, start_training, train_flags

from llava.constants import MM_PROJECTOR_FILE
from llava.train.checkpoint_marker import COMPLETE_MARKER, mark_complete
from llava.train.checkpoints import latest_complete_checkpoint, resolve_resume_checkpoint
from llava.train.preflight import LaunchError

STEPS = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "1"]


def resume_flags(assets, data, out):
    return train_flags(assets, data, out, stage=1, llm="llama", extra=STEPS)


@pytest.fixture(scope="module")
def killed_and_resumed(tiny_assets, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    uninterrupted, interrupted = root / "uninterrupted", root / "interrupted"
    # A and the first leg of B run side by side (one thread each) to halve the wall time.
    env = {"OMP_NUM_THREADS": "1"}
    run_a = start_training(resume_flags(tiny_assets, tiny_data, uninterrupted), root / "a.log", **env)
    killed = run_training(resume_flags(tiny_assets, tiny_data, interrupted), root / "b1.log",
                          PARROT_TEST_SIGKILL_AFTER_SAVE="2", **env)
    assert run_a.wait(timeout=300) == 0, (root / "a.log").read_text()[-3000:]
    after_kill = sorted(p.name for p in interrupted.iterdir())
    half_written = interrupted / "checkpoint-3"
    shutil.copytree(interrupted / "checkpoint-2", half_written)
    (half_written / COMPLETE_MARKER).unlink()
    (half_written / "model.safetensors").write_bytes(b"truncated")
    resumed = run_training(resume_flags(tiny_assets, tiny_data, interrupted), root / "b2.log", **env)
    assert resumed == 0, (root / "b2.log").read_text()[-3000:]
    return {"killed": killed, "after_kill": after_kill, "uninterrupted": uninterrupted, "interrupted": interrupted,
            "resumed_log": (root / "b2.log").read_text()}


def test_killed_run_resumes_to_the_uninterrupted_runs_weights(killed_and_resumed):
    assert killed_and_resumed["killed"] == -9
    assert killed_and_resumed["after_kill"] == ["checkpoint-2"]
    reference = torch.load(killed_and_resumed["uninterrupted"] / MM_PROJECTOR_FILE, weights_only=True)
    resumed = torch.load(killed_and_resumed["interrupted"] / MM_PROJECTOR_FILE, weights_only=True)
    assert reference.keys() == resumed.keys()
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=1e-5, atol=1e-6)


def test_auto_resume_takes_the_newest_complete_checkpoint_and_says_so(killed_and_resumed):
    log = killed_and_resumed["resumed_log"]
    assert "auto-resuming from" in log and "checkpoint-2" in log
    assert "removing incomplete" in log and "checkpoint-3" in log
    state = json.loads((killed_and_resumed["interrupted"] / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_rotation_keeps_only_the_newest_checkpoint_and_it_is_marked_complete(killed_and_resumed):
    for run in ("uninterrupted", "interrupted"):
        checkpoints = sorted(p.name for p in killed_and_resumed[run].glob("checkpoint-*"))
        assert checkpoints == ["checkpoint-4"]
        assert (killed_and_resumed[run] / "checkpoint-4" / COMPLETE_MARKER).is_file()


def make_checkpoint(root, step, complete=True):
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        mark_complete(str(path), step)
    return path


def test_newest_complete_checkpoint_wins_over_newer_incomplete_ones(tmp_path):
    make_checkpoint(tmp_path, 10)
    make_checkpoint(tmp_path, 20)
    make_checkpoint(tmp_path, 30, complete=False)
    assert latest_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-20")
    assert resolve_resume_checkpoint(None, str(tmp_path), auto_resume=True) == str(tmp_path / "checkpoint-20")


def test_auto_resume_off_or_nothing_complete_starts_fresh(tmp_path):
    make_checkpoint(tmp_path, 5, complete=False)
    assert resolve_resume_checkpoint(None, str(tmp_path), auto_resume=True) is None
    make_checkpoint(tmp_path, 6)
    assert resolve_resume_checkpoint(None, str(tmp_path), auto_resume=False) is None
    assert resolve_resume_checkpoint("False", str(tmp_path), auto_resume=True) is None


def test_explicit_resume_from_an_incomplete_checkpoint_is_refused_with_the_alternative(tmp_path):
    make_checkpoint(tmp_path, 2)
    partial = make_checkpoint(tmp_path, 4, complete=False)
    with pytest.raises(LaunchError, match="incomplete checkpoint.*resume from .*checkpoint-2"):
        resolve_resume_checkpoint(str(partial), str(tmp_path), auto_resume=True)


def test_resume_true_without_a_complete_checkpoint_names_the_output_dir(tmp_path):
    with pytest.raises(LaunchError, match=f"no complete checkpoint-\\* in --output_dir {tmp_path}"):
        resolve_resume_checkpoint("True", str(tmp_path), auto_resume=False)
