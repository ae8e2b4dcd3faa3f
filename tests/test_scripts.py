"""Launch scripts: syntax, the fully resolved command under DRY_RUN=1 (paper Table 5 values, batch
arithmetic on 8/16/32 GPUs), flags that train.py accepts, and the preflight that stops a launch."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from llava.train.train import parse_args

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
ALL_SCRIPTS = sorted(SCRIPTS.rglob("*.sh"))
TRAIN_PY = str(SCRIPTS.parent / "llava" / "train" / "train_mem.py")


@pytest.fixture()
def data_env(tmp_path):
    """Environment pointing every data variable at files that exist, plus a hostfile."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("pretrain.json", "finetune.json", "mm_projector.bin", "hostfile"):
        (tmp_path / name).write_text("node-0 slots=8\nnode-1 slots=8\n" if name == "hostfile" else "[]")
    return {
        "PRETRAIN_DATA": str(tmp_path / "pretrain.json"), "PRETRAIN_IMAGES": str(images),
        "FINETUNE_DATA": str(tmp_path / "finetune.json"), "FINETUNE_IMAGES": str(images),
        "PRETRAIN_MM_MLP_ADAPTER": str(tmp_path / "mm_projector.bin"), "HOSTFILE": str(tmp_path / "hostfile"),
        "REPORT_TO": "none",
    }


def run_script(script: str, env: dict, *args: str, dry_run: bool = True) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("NNODES", "GPUS_PER_NODE", "HF_HUB_OFFLINE")}
    full_env.update(env, DRY_RUN="1" if dry_run else "0")
    return subprocess.run(["bash", str(SCRIPTS / script), *args], env=full_env, capture_output=True, text=True,
                          timeout=60)


def dry_run(script: str, env: dict, *args: str) -> tuple[list[str], dict[str, str]]:
    """(launcher tokens, train.py flags as a dict) of the printed command."""
    result = run_script(script, env, *args)
    assert result.returncode == 0, result.stderr
    tokens = shlex.split(result.stdout)
    at = tokens.index(TRAIN_PY)
    flags = tokens[at + 1 :]
    return tokens[:at], dict(zip(flags[::2], flags[1::2]))


def global_batch(launcher: list[str], flags: dict[str, str], nnodes: int) -> int:
    gpus = int(launcher[launcher.index("--num_gpus") + 1]) * nnodes
    return gpus * int(flags["--per_device_train_batch_size"]) * int(flags["--gradient_accumulation_steps"])


@pytest.mark.parametrize("script", ALL_SCRIPTS, ids=lambda p: str(p.relative_to(SCRIPTS)))
def test_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("nnodes", "gpus_per_node", "stage1", "stage2"),
    [(1, 8, ("16", "2"), ("8", "2")), (2, 8, ("16", "1"), ("8", "1")), (4, 8, ("8", "1"), ("4", "1"))],
    ids=["8gpus", "16gpus", "32gpus"],
)
def test_global_batch_stays_256_and_128_on_8_16_and_32_gpus(data_env, nnodes, gpus_per_node, stage1, stage2):
    env = dict(data_env, NNODES=str(nnodes), GPUS_PER_NODE=str(gpus_per_node))
    for script, expected, total in (("parrot/pretrain.sh", stage1, 256), ("parrot/finetune.sh", stage2, 128)):
        launcher, flags = dry_run(script, env)
        assert (flags["--per_device_train_batch_size"], flags["--gradient_accumulation_steps"]) == expected
        assert global_batch(launcher, flags, nnodes) == total


def test_two_node_default_uses_the_hostfile_and_table5_stage1_settings(data_env):
    launcher, flags = dry_run("parrot/pretrain.sh", data_env)
    assert launcher[:3] == ["deepspeed", "--num_gpus", "8"]
    assert launcher[launcher.index("--hostfile") + 1] == data_env["HOSTFILE"] and "--num_nodes" in launcher
    assert flags["--deepspeed"].endswith("scripts/zero2.json") and flags["--learning_rate"] == "1e-3"
    assert (flags["--model_name_or_path"], flags["--vision_tower"]) == (
        "Qwen/Qwen1.5-7B-Chat", "openai/clip-vit-large-patch14-336")
    assert (flags["--version"], flags["--tune_mm_mlp_adapter"], flags["--mm_projector_type"]) == (
        "plain", "True", "mlp2x_gelu")
    assert (flags["--lr_scheduler_type"], flags["--warmup_ratio"], flags["--weight_decay"]) == ("cosine", "0.03", "0.")
    assert (flags["--model_max_length"], flags["--bf16"], flags["--gradient_checkpointing"]) == ("2048", "True", "True")


def test_stage2_runs_parrot_moe_under_zero3_from_the_stage1_projector(data_env):
    _, flags = dry_run("parrot/finetune.sh", data_env)
    assert flags["--deepspeed"].endswith("scripts/zero3.json") and flags["--learning_rate"] == "2e-5"
    assert (flags["--mm_projector_type"], flags["--version"]) == ("parrot_moe", "qwen_1_5")
    assert flags["--pretrain_mm_mlp_adapter"] == data_env["PRETRAIN_MM_MLP_ADAPTER"]


def test_variants_change_only_what_they_name(data_env):
    launcher, flags = dry_run("parrot/finetune_1node.sh", data_env)
    assert "--hostfile" not in launcher and launcher[launcher.index("--num_gpus") + 1] == "8"
    _, flags = dry_run("parrot/finetune_14b.sh", data_env)
    assert flags["--model_name_or_path"] == "Qwen/Qwen1.5-14B-Chat"
    assert flags["--output_dir"] == "./checkpoints/parrot-qwen1.5-14b"
    _, flags = dry_run("parrot/pretrain_14b.sh", data_env)
    assert flags["--model_name_or_path"] == "Qwen/Qwen1.5-14B-Chat"
    _, flags = dry_run("parrot/finetune_lora.sh", data_env)
    assert (flags["--lora_enable"], flags["--learning_rate"], flags["--mm_projector_lr"]) == ("True", "2e-4", "2e-5")
    assert flags["--mm_projector_type"] == "parrot_moe"


def test_llava_v1_5_scripts_keep_upstream_settings_and_swap_in_parrot_by_one_variable(data_env):
    launcher, flags = dry_run("v1_5/pretrain.sh", data_env)
    assert "--hostfile" not in launcher and flags["--model_name_or_path"] == "lmsys/vicuna-7b-v1.5"
    assert (flags["--per_device_train_batch_size"], flags["--gradient_accumulation_steps"]) == ("32", "1")
    _, flags = dry_run("v1_5/finetune.sh", dict(data_env, PROJECTOR="parrot_moe"))
    assert (flags["--version"], flags["--mm_projector_type"]) == ("v1", "parrot_moe")
    assert (flags["--per_device_train_batch_size"], flags["--gradient_accumulation_steps"]) == ("16", "1")


@pytest.mark.parametrize("script", ["parrot/pretrain.sh", "parrot/finetune.sh", "parrot/finetune_lora.sh",
                                    "v1_5/pretrain.sh", "v1_5/finetune.sh"])
def test_printed_command_is_accepted_by_train_py(data_env, script):
    _, flags = dry_run(script, data_env, "--max_steps", "3")
    flags.pop("--deepspeed")  # parsing it would set up DeepSpeed in this test process; configs are tested apart
    argv = [token for pair in flags.items() for token in pair]
    _, data_args, training_args, _ = parse_args(argv)
    assert data_args.data_path in (data_env["PRETRAIN_DATA"], data_env["FINETUNE_DATA"])
    assert training_args.max_steps == 3 and training_args.num_train_epochs == 1


def test_missing_data_stops_before_launch_naming_the_variable(data_env, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launched = tmp_path / "launched"
    (bin_dir / "deepspeed").write_text(f"#!/bin/sh\ntouch {launched}\n")
    (bin_dir / "deepspeed").chmod(0o755)
    env = dict(data_env, FINETUNE_DATA=str(tmp_path / "missing.json"), PATH=f"{bin_dir}:{os.environ['PATH']}")
    result = run_script("parrot/finetune.sh", env, dry_run=False)
    assert result.returncode == 1 and not launched.exists()
    assert f"FINETUNE_DATA={tmp_path / 'missing.json'}: no such file" in result.stderr


def test_missing_hostfile_for_two_nodes_says_how_to_fix_it(data_env, tmp_path):
    result = run_script("parrot/pretrain.sh", dict(data_env, HOSTFILE=str(tmp_path / "nohost")))
    assert result.returncode == 1
    assert "hostfile.example" in result.stderr and "NNODES=1" in result.stderr


def test_without_dry_run_the_resolved_command_is_executed(data_env, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "deepspeed").write_text('#!/bin/sh\necho "launched $@"\n')
    (bin_dir / "deepspeed").chmod(0o755)
    result = run_script("parrot/pretrain_1node.sh", dict(data_env, PATH=f"{bin_dir}:{os.environ['PATH']}"),
                        dry_run=False)
    assert result.returncode == 0 and result.stdout.startswith("launched --num_gpus 8")
