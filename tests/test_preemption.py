"""Preemption (issue 15): on SIGTERM or SIGUSR1 training finishes the current optimizer step on
every rank, writes a complete checkpoint and exits with status 75; rerunning resumes to the weights
of a run that was never interrupted. A second SIGTERM while the checkpoint is written changes
nothing. The two-rank run also carries a bad sample on one rank, which every rank skips together,
and is resumed next to a newer damaged checkpoint, which both ranks agree to set aside.
"""

from __future__ import annotations

import logging
import re
import shutil
import signal

import pytest
import torch
from conftest import stage1_resume_flags
from distributed_utils import start_ranks
from training_helpers import SignalDuringStep

from llava.constants import MM_PROJECTOR_FILE
from llava.train.checkpoint_marker import checkpoint_problems
from llava.train.preemption import PREEMPTED_EXIT_CODE, parse_signals
from llava.train.preflight import LaunchError
from llava.train.train import main

RANKS_TIMEOUT_S = 300


def projector(out):
    return torch.load(out / MM_PROJECTOR_FILE, weights_only=True)


def assert_same_weights(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)


def test_sigterm_stops_after_the_step_with_a_checkpoint_that_a_second_sigterm_does_not_spoil(
    stage1_reference_run, tiny_assets, tiny_data, tmp_path, capsys, caplog, monkeypatch
):
    save = torch.save

    def save_with_a_second_sigterm(obj, path, *args, **kwargs):
        if str(path).endswith("checkpoint-3/optimizer.pt"):
            signal.raise_signal(signal.SIGTERM)  # in the middle of writing the checkpoint
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_with_a_second_sigterm)
    flags = stage1_resume_flags(tiny_assets, tiny_data, tmp_path)
    with pytest.raises(SystemExit) as exit_info, caplog.at_level(logging.WARNING, logger="llava.train.preemption"):
        main(flags, callbacks=[SignalDuringStep("SIGTERM", 3)])
    assert exit_info.value.code == PREEMPTED_EXIT_CODE == 75
    assert (f"SIGTERM received: stopped after step 3 with a complete checkpoint, {tmp_path / 'checkpoint-3'}"
            in capsys.readouterr().err)
    assert any("SIGTERM received again: already stopping" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert checkpoint_problems(str(tmp_path / "checkpoint-3")) == ([], True)
    assert not (tmp_path / MM_PROJECTOR_FILE).exists()  # no final save: the run is not finished
    monkeypatch.undo()

    with caplog.at_level(logging.WARNING, logger="llava.train.checkpoints"):
        main(flags)
    assert any(f"auto-resuming from {tmp_path / 'checkpoint-3'}" in r.getMessage() for r in caplog.records)
    assert_same_weights(projector(tmp_path), projector(stage1_reference_run))


def test_preemption_signals_flag_takes_names_and_refuses_what_cannot_be_caught():
    assert parse_signals("SIGTERM,usr1") == [signal.SIGTERM, signal.SIGUSR1]
    assert parse_signals("none") == [] and parse_signals("") == []
    with pytest.raises(LaunchError, match="SIGKILL cannot be caught"):
        parse_signals("SIGTERM,SIGKILL")
    with pytest.raises(LaunchError, match="unknown signal 'SIGFOO'"):
        parse_signals("SIGFOO")


def wait_all(processes) -> list[int]:
    return [p.wait(timeout=RANKS_TIMEOUT_S) for p in processes]


@pytest.fixture(scope="module")
def two_ranks(tiny_assets, tiny_data, tmp_path_factory):
    """Two ranks, a NaN sample (cap5) among the data: an uninterrupted run; and a run whose rank 1
    alone gets SIGUSR1 during step 3, then that run relaunched."""
    root = tmp_path_factory.mktemp("two_ranks")
    bad = {"PARROT_TEST_NAN_SAMPLES": "cap5"}
    reference, preempted = root / "reference", root / "preempted"
    logs = {name: [root / f"{name}{rank}.log" for rank in range(2)] for name in ("reference", "stopped", "resumed")}
    reference_ranks = start_ranks(stage1_resume_flags(tiny_assets, tiny_data, reference), logs["reference"],
                                  [{**bad, "PARROT_TEST_RANK_WEIGHTS": str(root / "rank")}] * 2)
    stopped = wait_all(start_ranks(stage1_resume_flags(tiny_assets, tiny_data, preempted), logs["stopped"],
                                   [bad, {**bad, "PARROT_TEST_SIGNAL": "SIGUSR1@3"}]))
    after_stop = sorted(p.name for p in preempted.glob("checkpoint-*"))
    intact = checkpoint_problems(str(preempted / "checkpoint-3"))
    # A newer checkpoint damaged since it was written: both ranks must agree to set it aside.
    shutil.copytree(preempted / "checkpoint-3", preempted / "checkpoint-9")
    (preempted / "checkpoint-9" / MM_PROJECTOR_FILE).write_bytes(b"")
    resumed = wait_all(start_ranks(stage1_resume_flags(tiny_assets, tiny_data, preempted), logs["resumed"], [bad] * 2))
    text = {name: [log.read_text() for log in paths] for name, paths in logs.items()}
    assert wait_all(reference_ranks) == [0, 0], text["reference"][0][-3000:]
    return {"stopped": stopped, "resumed": resumed, "after_stop": after_stop, "intact": intact, "logs": text,
            "reference": reference, "preempted": preempted, "rank_weights": [root / f"rank{r}.pt" for r in range(2)]}


@pytest.mark.slow
def test_signal_on_one_rank_stops_every_rank_after_the_same_step_with_exit_75(two_ranks):
    assert two_ranks["stopped"] == [PREEMPTED_EXIT_CODE, PREEMPTED_EXIT_CODE], two_ranks["logs"]["stopped"][0][-3000:]
    checkpoint = two_ranks["preempted"] / "checkpoint-3"
    for log in two_ranks["logs"]["stopped"]:
        assert f"SIGUSR1 received: stopped after step 3 with a complete checkpoint, {checkpoint}" in log
    assert "SIGUSR1 received: finishing the current optimizer step" in two_ranks["logs"]["stopped"][1]
    assert "SIGUSR1 received: finishing" not in two_ranks["logs"]["stopped"][0]  # rank 0 learnt it from rank 1
    # (checkpoint-2 exists unless step 2 was the bad step: no checkpoint is written during bad steps)
    assert two_ranks["after_stop"][-1] == "checkpoint-3" and two_ranks["intact"] == ([], True)


@pytest.mark.slow
def test_preempted_two_rank_run_resumes_to_the_uninterrupted_runs_weights(two_ranks):
    assert two_ranks["resumed"] == [0, 0], two_ranks["logs"]["resumed"][1][-3000:]
    log = two_ranks["logs"]["resumed"][0]
    assert f"checkpoint {two_ranks['preempted'] / 'checkpoint-9'} is damaged, skipped" in log
    assert f"auto-resuming from {two_ranks['preempted'] / 'checkpoint-3'}" in log
    assert_same_weights(projector(two_ranks["preempted"]), projector(two_ranks["reference"]))


@pytest.mark.slow
def test_bad_sample_on_one_rank_is_skipped_by_every_rank(two_ranks):
    log = two_ranks["logs"]["reference"][0]
    skipped = re.findall(r"step \d+: loss nan on rank (\d)[^;]*; samples with a non-finite loss: [^.]*cap5\b", log)
    assert len(skipped) == 1 and "Skipped: no update" in log, log[-3000:]
    rank0, rank1 = (torch.load(path, weights_only=True) for path in two_ranks["rank_weights"])
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert all(torch.isfinite(w).all() for w in rank0.values())
