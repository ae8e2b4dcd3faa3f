"""Several nodes on one machine (issue 15): two `torchrun --nnodes 2 --node_rank 0|1` invocations, one
process each, rendezvous on 127.0.0.1, train stage 2 with parrot_moe under ZeRO-3 into one shared
output_dir, as two 8-GPU nodes on a shared filesystem would.

Who wrote a file is told by the umask each node runs with: node 0 creates files 0644, node 1 files
0600. Node 1 also waits before each `torch.save`, so a marker written without waiting for it would
be older than its shards. A second job is SIGKILLed on node 1 (its torchrun and its worker) after
the first checkpoint, then both nodes are restarted with the same command. Every job has a NaN
sample on node 1 in step 3, which both nodes skip (under ZeRO-3, DeepSpeed skips the update).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import torch
from distributed_utils import REPO, free_port, start_node, train_flags
from safetensors.torch import load_file

from llava.train.checkpoint_marker import COMPLETE_MARKER, checkpoint_problems, read_marker
from llava.train.checkpoints import main as checkpoints_cli

pytestmark = pytest.mark.slow

NODE_TIMEOUT_S = 300
RANK1_FILES = {"global_step2/zero_pp_rank_1_mp_rank_00_model_states.pt",
               "global_step2/zero_pp_rank_1_mp_rank_00_optim_states.pt", "rng_state_1.pth"}


def stage2_flags(assets, data, out) -> list[str]:
    return train_flags(assets, data, out, stage=2, llm="llama", extra=[
        "--deepspeed", str(REPO / "scripts" / "zero3.json"), "--max_steps", "4", "--save_strategy", "steps",
        "--save_steps", "2", "--mm_projector_type", "parrot_moe", "--moe_num_experts", "3", "--learning_rate", "1e-4"])


def start_job(flags, root: Path, name: str, node1_env: dict[str, str]) -> list[subprocess.Popen]:
    """Both nodes of a job. Every job has a bad sample, ins3, which falls on rank 1 in step 3."""
    port, bad = free_port(), {"PARROT_TEST_NAN_SAMPLES": "ins3"}
    return [start_node(flags, root / f"{name}-node0.log", 0, port, 0o022, PARROT_TEST_WRITES=str(root / f"{name}0.json"),
                       **bad),
            start_node(flags, root / f"{name}-node1.log", 1, port, 0o077, PARROT_TEST_WRITES=str(root / f"{name}1.json"),
                       **bad, **node1_env)]


@pytest.fixture(scope="module")
def two_nodes(tiny_assets, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("two_nodes")
    reference, interrupted = root / "reference", root / "interrupted"
    reference_job = start_job(stage2_flags(tiny_assets, tiny_data, reference), root, "reference",
                              {"PARROT_TEST_SLOW_SAVE": "0.5"})
    killed_job = start_job(stage2_flags(tiny_assets, tiny_data, interrupted), root, "killed",
                           {"PARROT_TEST_SIGKILL_NODE_AFTER_SAVE": "2"})
    node1_status = killed_job[1].wait(timeout=NODE_TIMEOUT_S)
    try:  # node 0 loses its peer; whatever it does then, the job is restarted on both nodes
        killed_job[0].wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(killed_job[0].pid, signal.SIGKILL)
        killed_job[0].wait()
    after_kill = sorted(p.name for p in interrupted.glob("checkpoint-*") if (p / COMPLETE_MARKER).is_file())
    restarted = [p.wait(timeout=NODE_TIMEOUT_S) for p in start_job(stage2_flags(tiny_assets, tiny_data, interrupted),
                                                                  root, "restarted", {})]
    reference_status = [p.wait(timeout=NODE_TIMEOUT_S) for p in reference_job]
    logs = {log.stem: log.read_text() for log in root.glob("*.log")}
    assert reference_status == [0, 0], logs["reference-node0"][-3000:] + logs["reference-node1"][-3000:]
    return {"root": root, "reference": reference, "interrupted": interrupted, "node1_status": node1_status,
            "after_kill": after_kill, "restarted": restarted, "logs": logs}


def created_by_node1(path: Path) -> bool:
    """Node 1 (umask 077) creates files 0600, node 0 (umask 022) 0644, except safetensors files,
    which safetensors always creates 0600."""
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def written_by(root: Path, log: str, out: Path) -> set[str]:
    """Files under `out` that one node's process wrote (PARROT_TEST_WRITES), relative to `out`."""
    paths = {Path(p) for p in json.loads((root / log).read_text())}
    return {p.relative_to(out).as_posix() for p in paths if p.is_relative_to(out) and not p.is_dir()}


def test_every_rank_writes_its_shards_into_the_shared_output_dir(two_nodes):
    checkpoint = two_nodes["reference"] / "checkpoint-2"
    for rank in (0, 1):
        for kind in ("model", "optim"):
            shard = checkpoint / "global_step2" / f"zero_pp_rank_{rank}_mp_rank_00_{kind}_states.pt"
            assert shard.is_file() and created_by_node1(shard) == (rank == 1), shard
    assert created_by_node1(checkpoint / "rng_state_1.pth") and not created_by_node1(checkpoint / "rng_state_0.pth")


def test_only_global_rank_0_writes_config_tokenizer_weights_and_marker(two_nodes):
    out = two_nodes["reference"]
    by_node1 = written_by(two_nodes["root"], "reference1.json", out)
    assert by_node1 == {f"checkpoint-{step}/{name.replace('step2', f'step{step}')}"
                        for step in (2, 4) for name in RANK1_FILES}
    by_node0 = written_by(two_nodes["root"], "reference0.json", out)
    for name in ("config.json", "tokenizer_config.json", "model.safetensors", COMPLETE_MARKER + ".tmp",
                 "trainer_state.json"):
        assert f"checkpoint-2/{name}" in by_node0, name
    # tokenizer.json is written by the Rust tokenizers library, which the write log does not see:
    # its mode says that node 0 created it.
    for name in ("checkpoint-2/tokenizer.json", "tokenizer.json", "checkpoint-2/" + COMPLETE_MARKER):
        assert not created_by_node1(out / name), name


def test_marker_appears_only_after_both_nodes_wrote(two_nodes):
    checkpoint = two_nodes["reference"] / "checkpoint-2"
    marker = checkpoint / COMPLETE_MARKER
    recorded = read_marker(str(checkpoint))["files"]
    assert RANK1_FILES <= recorded.keys()  # node 1's shards are in it, with their sizes and checksums
    newest_shard = max((checkpoint / name).stat().st_mtime_ns for name in recorded)
    assert marker.stat().st_mtime_ns >= newest_shard


def test_sigkill_of_node_1_then_restart_of_both_resumes_to_the_uninterrupted_weights(two_nodes):
    assert two_nodes["node1_status"] == -signal.SIGKILL
    assert two_nodes["after_kill"] == ["checkpoint-2"]
    assert two_nodes["restarted"] == [0, 0], two_nodes["logs"]["restarted-node0"][-3000:]
    assert f"auto-resuming from {two_nodes['interrupted'] / 'checkpoint-2'}" in two_nodes["logs"]["restarted-node0"]
    resumed, reference = (load_file(out / "model.safetensors") for out in (two_nodes["interrupted"],
                                                                            two_nodes["reference"]))
    assert resumed.keys() == reference.keys() and any(k.startswith("mm_projector.moe.") for k in reference)
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=1e-5, atol=1e-6)


def test_bad_sample_on_node_1_is_skipped_by_both_nodes_under_zero3(two_nodes):
    for job in ("reference", "restarted"):
        log = two_nodes["logs"][f"{job}-node0"]
        assert ("step 3: loss nan on rank 1 and gradient norm inf; samples with a non-finite loss: ins3, ins13. "
                "Skipped: no update") in log, log[-3000:]
    weights = load_file(two_nodes["reference"] / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_missing_zero_shard_of_node_1_is_named_by_verify(two_nodes, tmp_path, capsys):
    checkpoint = tmp_path / "checkpoint-2"
    shutil.copytree(two_nodes["reference"] / "checkpoint-2", checkpoint)
    assert checkpoint_problems(str(checkpoint)) == ([], True)
    (checkpoint / "global_step2" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    with pytest.raises(SystemExit) as exit_info:
        checkpoints_cli(["verify", str(checkpoint)])
    assert exit_info.value.code == 1
    assert capsys.readouterr().out == f"{checkpoint}/global_step2/zero_pp_rank_1_mp_rank_00_optim_states.pt: missing\n"
