"""Running `llava.train.train` in subprocesses for the distributed, resume and LoRA tests.

Imported by the tests for `train_flags`, `run_training`, `run_torchrun` and `start_ranks`; also the
script that those subprocesses run (`python tests/distributed_utils.py <train flags>`), which calls the
real `llava.train.train.main` (so exit statuses are the command line's) with test-only extras,
switched on by environment variables:

- `PARROT_TEST_PROBE=path`: after training, run the trained model (still wrapped by DeepSpeed on
  every rank, so ZeRO-3 gathers its shards) on a fixed batch of the training data and save
  `{"batch", "logits"}` from rank 0;
- `PARROT_TEST_SIGKILL_AFTER_SAVE=N`: SIGKILL this process right after checkpoint N is saved;
  `PARROT_TEST_SIGKILL_NODE_AFTER_SAVE=N`: the same, and its parent (the node's torchrun) first;
- `PARROT_TEST_SIGNAL=SIGUSR1@N`: send that signal to this process when step N begins;
- `PARROT_TEST_NAN_SAMPLES=id,id`: the images of these data items are all NaN (bad samples);
- `PARROT_TEST_RANK_WEIGHTS=prefix`: after training every rank saves its trainable weights to
  `{prefix}{rank}.pt`;
- `PARROT_TEST_SLOW_SAVE=seconds`: every `torch.save` of this process waits that long first;
- `PARROT_TEST_WRITES=path`: every file this process writes (opened for writing from Python, or
  written by `torch.save` or safetensors) is listed in `path` (JSON) at exit;
- `PARROT_TEST_RECORD_ROWS=path`: with `--packing`, every row the data loader reads is appended to
  `path.rank<RANK>` as a JSON list of the item ids packed into it.

DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce kernel (used only for inference)
when it starts, which takes minutes on two cores; the script declares that op unavailable so the
tests use plain gloo collectives. GPU runs never build it.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
TORCHRUN_TIMEOUT_S = 300


def train_flags(assets: dict, data: dict, out: Path, *, stage: int, llm: str = "qwen2", extra=()) -> list[str]:
    """Flags of a tiny run: stage 1 (projector only, captions) or stage 2 (instructions)."""
    flags = [
        "--model_name_or_path", str(assets[llm]),
        "--vision_tower", str(assets["clip"]),
        "--image_folder", str(data["images"]),
        "--mm_vision_select_layer", "-2",
        "--mm_use_im_start_end", "False",
        "--mm_use_im_patch_token", "False",
        "--output_dir", str(out),
        "--per_device_train_batch_size", "2",
        "--logging_steps", "1",
        "--report_to", "none",
        "--dataloader_num_workers", "0",
        "--seed", "0",
        "--weight_decay", "0.",
    ]
    if stage == 1:
        flags += ["--version", "plain", "--data_path", str(data["captions"]), "--mm_projector_type", "mlp2x_gelu",
                  "--tune_mm_mlp_adapter", "True", "--learning_rate", "1e-2"]
    else:
        flags += ["--version", "qwen_2", "--data_path", str(data["instructions"]), "--learning_rate", "1e-3"]
    return flags + list(extra)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        **extra,
    )
    return env


def start_training(argv: list[str], log: Path, **env: str) -> subprocess.Popen:
    """Start one training process (`python tests/distributed_utils.py ...`); output goes to `log`."""
    env = {"OMP_NUM_THREADS": "2", **env}
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, str(SCRIPT), *argv], stdout=f, stderr=subprocess.STDOUT,
                                env=_env(**env), cwd=REPO)


def run_training(argv: list[str], log: Path, **env: str) -> int:
    """Run one training process to its end; returns its exit status (negative: killed by that signal)."""
    return start_training(argv, log, **env).wait(timeout=TORCHRUN_TIMEOUT_S)


def start_ranks(argv: list[str], logs: list[Path], env_per_rank: list[dict[str, str]]) -> list[subprocess.Popen]:
    """One training process per rank on this host, wired together as `torchrun` does (RANK,
    WORLD_SIZE, MASTER_ADDR/PORT, ...) but started directly, so each rank's exit status is its own."""
    world, port = len(env_per_rank), str(free_port())
    processes = []
    for rank, (log, extra) in enumerate(zip(logs, env_per_rank)):
        env = {"OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world), **extra}
        processes.append(start_training(argv, log, **env))
    return processes


def start_node(argv: list[str], log: Path, node_rank: int, master_port: int, umask: int, **env: str) -> subprocess.Popen:
    """One "node" of a two-node job on this host: `torchrun --nnodes 2 --node_rank R --nproc_per_node 1`
    with its rendezvous on 127.0.0.1:`master_port`, in a session of its own (so the test can kill the
    whole node), creating files with `umask` (which tells which node created a file)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node_rank),
               "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(master_port),
               str(SCRIPT), *argv]
    with open(log, "w") as f:
        return subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=_env(OMP_NUM_THREADS="1", **env),
                                cwd=REPO, start_new_session=True, preexec_fn=lambda: os.umask(umask))


def run_torchrun(argv: list[str], log: Path, nproc: int = 2, **env: str) -> int:
    """`torchrun --nproc_per_node 2 tests/distributed_utils.py ...` on gloo (one thread per rank);
    output goes to `log`; returns the exit status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(free_port()), str(SCRIPT), *argv]
    with open(log, "w") as f:
        return subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=_env(OMP_NUM_THREADS="1", **env),
                              cwd=REPO, timeout=TORCHRUN_TIMEOUT_S).returncode


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _disable_deepspeed_shm_kernel() -> None:
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__ = {}


def _probe(trainer, path: str) -> None:
    """Logits of the DeepSpeed-wrapped trained model on two fixed training items, saved by rank 0."""
    import torch

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    batch.pop("image_langs", None)
    batch.pop("ids", None)
    model = trainer.model_wrapped
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits.float().cpu()
    if trainer.args.should_save:
        torch.save({"batch": batch, "logits": logits}, path)


def _test_callbacks() -> list:
    from training_helpers import SignalDuringStep
    from transformers import TrainerCallback

    callbacks = []
    kill_at = os.environ.get("PARROT_TEST_SIGKILL_AFTER_SAVE") or os.environ.get("PARROT_TEST_SIGKILL_NODE_AFTER_SAVE")
    if kill_at:
        whole_node = "PARROT_TEST_SIGKILL_NODE_AFTER_SAVE" in os.environ

        class KillAfterSave(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                if state.global_step == int(kill_at):
                    if whole_node:
                        os.kill(os.getppid(), signal.SIGKILL)
                    os.kill(os.getpid(), signal.SIGKILL)

        callbacks.append(KillAfterSave())
    if os.environ.get("PARROT_TEST_SIGNAL"):
        name, step = os.environ["PARROT_TEST_SIGNAL"].split("@")
        callbacks.append(SignalDuringStep(name, int(step)))
    return callbacks


def _slow_saves(seconds: float) -> None:
    import torch

    save = torch.save

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return save(*args, **kwargs)

    torch.save = slow


def _list_writes(path: str) -> None:
    """Record the files this process writes: what Python opens for writing (json, text, temp files)
    and every `torch.save` and safetensors `save_file` target (C++ and Rust writers, which Python's
    audit hook does not see). Runs before transformers is imported, which binds `save_file` early."""
    import safetensors.torch
    import torch

    written: list[str] = []
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str) and isinstance(args[2], int) and args[2] & writing:
            written.append(os.path.abspath(args[0]))

    def recording(save):
        def save_and_record(obj, target, *args, **kwargs):
            if isinstance(target, (str, os.PathLike)):
                written.append(os.path.abspath(target))
            return save(obj, target, *args, **kwargs)

        return save_and_record

    sys.addaudithook(hook)
    torch.save = recording(torch.save)
    safetensors.torch.save_file = recording(safetensors.torch.save_file)
    atexit.register(lambda: Path(path).write_text(json.dumps(written)))


def _save_rank_weights(trainer, prefix: str) -> None:
    import torch

    weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    torch.save(weights, f"{prefix}{trainer.args.process_index}.pt")


def _record_packed_rows(path: str) -> None:
    import json

    from llava.data.packing import PackedDataset

    read_row = PackedDataset.__getitem__

    def recording(self, index):
        with open(f"{path}.rank{os.environ.get('RANK', '0')}", "a") as f:
            f.write(json.dumps([self.dataset.items[i]["id"] for i in self.packs[index]]) + "\n")
        return read_row(self, index)

    PackedDataset.__getitem__ = recording


def main() -> None:
    if os.environ.get("PARROT_TEST_WRITES"):
        _list_writes(os.environ["PARROT_TEST_WRITES"])
    if os.environ.get("PARROT_TEST_SLOW_SAVE"):
        _slow_saves(float(os.environ["PARROT_TEST_SLOW_SAVE"]))
    _disable_deepspeed_shm_kernel()
    if os.environ.get("PARROT_TEST_RECORD_ROWS"):
        _record_packed_rows(os.environ["PARROT_TEST_RECORD_ROWS"])
    from training_helpers import nan_images_for

    from llava.train.train import main as train_main

    with nan_images_for(set(filter(None, os.environ.get("PARROT_TEST_NAN_SAMPLES", "").split(",")))):
        trainer = train_main(sys.argv[1:], callbacks=_test_callbacks())
    probe = os.environ.get("PARROT_TEST_PROBE")
    if probe:
        _probe(trainer, probe)
    if os.environ.get("PARROT_TEST_RANK_WEIGHTS"):
        _save_rank_weights(trainer, os.environ["PARROT_TEST_RANK_WEIGHTS"])


if __name__ == "__main__":
    main()
