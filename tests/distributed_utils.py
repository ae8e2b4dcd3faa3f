"""Running `llava.train.train` in subprocesses for the distributed, resume and LoRA tests.

Imported by the tests for `train_flags`, `run_training` and `run_torchrun`; also the script that those
subprocesses run (`python tests/distributed_utils.py <train flags>`), which calls the real
`llava.train.train.train` with two test-only extras, switched on by environment variables:

- `PARROT_TEST_PROBE=path`: after training, run the trained model (still wrapped by DeepSpeed on
  every rank, so ZeRO-3 gathers its shards) on a fixed batch of the training data and save
  `{"batch", "logits"}` from rank 0;
- `PARROT_TEST_SIGKILL_AFTER_SAVE=N`: SIGKILL this process right after checkpoint N is saved;
- `PARROT_TEST_RECORD_ROWS=path`: with `--packing`, every row the data loader reads is appended to
  `path.rank<RANK>` as a JSON list of the item ids packed into it.

DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce kernel (used only for inference)
when it starts, which takes minutes on two cores; the script declares that op unavailable so the
tests use plain gloo collectives. GPU runs never build it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def run_torchrun(argv: list[str], log: Path, nproc: int = 2, **env: str) -> int:
    """`torchrun --nproc_per_node 2 tests/distributed_utils.py ...` on gloo (one thread per rank);
    output goes to `log`; returns the exit status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(_free_port()), str(SCRIPT), *argv]
    with open(log, "w") as f:
        return subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=_env(OMP_NUM_THREADS="1", **env),
                              cwd=REPO, timeout=TORCHRUN_TIMEOUT_S).returncode


def _free_port() -> int:
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
    model = trainer.model_wrapped
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits.float().cpu()
    if trainer.args.should_save:
        torch.save({"batch": batch, "logits": logits}, path)


def _sigkill_after(step: int):
    from transformers import TrainerCallback

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAfterSave()


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
    _disable_deepspeed_shm_kernel()
    if os.environ.get("PARROT_TEST_RECORD_ROWS"):
        _record_packed_rows(os.environ["PARROT_TEST_RECORD_ROWS"])
    from llava.train.train import train

    kill_at = os.environ.get("PARROT_TEST_SIGKILL_AFTER_SAVE")
    callbacks = [_sigkill_after(int(kill_at))] if kill_at else None
    trainer = train(sys.argv[1:], callbacks=callbacks)
    probe = os.environ.get("PARROT_TEST_PROBE")
    if probe:
        _probe(trainer, probe)


if __name__ == "__main__":
    main()
