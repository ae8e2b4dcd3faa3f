"""A full disk while saving (issue 15): no checkpoint is marked complete, the previous one stays
intact (even with --save_total_limit 1), and the run stops with the path and the space needed.
The fault is injected where the bytes are written: `torch.save` writes part of the file, then
raises ENOSPC as a full filesystem does."""

from __future__ import annotations

import errno
import os
import re

import pytest
import torch
from conftest import stage1_resume_flags

from llava.constants import MM_PROJECTOR_FILE
from llava.train.checkpoint_marker import checkpoint_problems, recorded_size
from llava.train.train import main


def disk_full_when_writing(monkeypatch, suffix: str) -> None:
    save = torch.save

    def save_on_a_full_disk(obj, path, *args, **kwargs):
        if str(path).endswith(suffix):
            with open(path, "wb") as f:
                f.write(b"\0" * 4096)  # what fitted
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint_and_names_path_and_space(
    stage1_reference_run, tiny_assets, tiny_data, tmp_path, capsys, monkeypatch
):
    flags = stage1_resume_flags(tiny_assets, tiny_data, tmp_path, "--save_total_limit", "1")
    disk_full_when_writing(monkeypatch, "checkpoint-4/optimizer.pt")
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    err = capsys.readouterr().err
    previous, failed = tmp_path / "checkpoint-2", tmp_path / "checkpoint-4"
    assert exit_info.value.code == 1
    assert f"checkpoint {failed}: No space left on device while writing {failed / 'optimizer.pt'}" in err
    needed = recorded_size(str(previous)) / 1000
    assert re.search(rf"a checkpoint of this run takes about {needed:.1f} KB \(the newest complete one\), and "
                     r"[\d.]+ [KMGT]?B are free there", err), err[-1500:]
    assert f"{previous} is intact, and the next run resumes from it" in err
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2"]  # partial one removed
    assert checkpoint_problems(str(previous)) == ([], True)
    assert not (tmp_path / MM_PROJECTOR_FILE).exists()

    monkeypatch.undo()  # space freed: the same command resumes from checkpoint-2
    main(flags)
    resumed, reference = (torch.load(out / MM_PROJECTOR_FILE, weights_only=True)
                          for out in (tmp_path, stage1_reference_run))
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-4"]


def test_disk_full_during_the_final_save_names_the_file_and_keeps_the_last_checkpoint(
    tiny_assets, tiny_data, tmp_path, capsys, monkeypatch
):
    disk_full_when_writing(monkeypatch, f"{tmp_path.name}/{MM_PROJECTOR_FILE}")
    with pytest.raises(SystemExit) as exit_info:
        main(stage1_resume_flags(tiny_assets, tiny_data, tmp_path))
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert f"saving the trained model to {tmp_path}: No space left on device while writing " \
           f"{tmp_path / MM_PROJECTOR_FILE}" in err
    assert f"{tmp_path / 'checkpoint-4'} is intact" in err
    assert checkpoint_problems(str(tmp_path / "checkpoint-4")) == ([], True)
