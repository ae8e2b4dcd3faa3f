"""Refuse to train into an output folder that holds a finished run (see `llava.output_dir`).

A run is finished once the end-of-training save wrote its top-level files: `trainer_state.json`
(`Trainer.save_state`, written only by the final save; checkpoints keep theirs inside
`checkpoint-N`), or `config.json` next to final weights (`mm_projector.bin` for stage 1,
`model.safetensors`/`pytorch_model.bin` (or their index) for a full model,
`adapter_model.safetensors` for LoRA). A folder with only `checkpoint-N` subfolders is an
unfinished run: auto-resume and `--resume_from_checkpoint` continue it exactly as before.

`--overwrite_output_dir` starts over in the folder: no auto-resume, and the earlier run's
`checkpoint-N` folders and `trainer_state.json` are removed by the main process (so a later
auto-resume of the new run cannot pick a checkpoint of the old one).
"""

from __future__ import annotations

import logging
import os
import shutil

from llava.constants import MM_PROJECTOR_FILE
from llava.output_dir import OVERWRITE_FLAG, finished_run_error
from llava.train.checkpoints import list_checkpoints
from llava.train.preflight import LaunchError

logger = logging.getLogger(__name__)

FINAL_STATE_FILE = "trainer_state.json"
FINAL_WEIGHT_FILES = (
    MM_PROJECTOR_FILE,
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
)


def finished_training_files(output_dir: str) -> list[str]:
    """The top-level files of `output_dir` that show a training run finished there (empty: none did)."""
    if not os.path.isdir(output_dir):
        return []
    present = set(os.listdir(output_dir))
    evidence = [FINAL_STATE_FILE] if FINAL_STATE_FILE in present else []
    weights = [name for name in FINAL_WEIGHT_FILES if name in present]
    if "config.json" in present and weights:
        evidence += ["config.json", *weights]
    return evidence


def guard_training_output_dir(training_args) -> None:
    """Refuse a finished `--output_dir` (LaunchError) unless `--overwrite_output_dir`; with the flag,
    start over there. An explicit `--resume_from_checkpoint` continues the run as asked."""
    output_dir = training_args.output_dir
    resume = training_args.resume_from_checkpoint
    resuming = resume is not None and str(resume).strip().lower() not in ("false", "no", "0", "none", "")
    if training_args.overwrite_output_dir:
        if resuming:
            raise LaunchError(
                f"{OVERWRITE_FLAG} (start over in {output_dir}) contradicts --resume_from_checkpoint {resume} "
                "(continue a run): drop one of the two"
            )
        training_args.auto_resume = False  # every rank decides alike, before anything is removed
        if training_args.should_save:
            stale = [path for _, path in list_checkpoints(output_dir)]
            if FINAL_STATE_FILE in finished_training_files(output_dir):
                stale.append(os.path.join(output_dir, FINAL_STATE_FILE))
            for path in stale:
                logger.warning("%s: removing %s of the earlier run in %s", OVERWRITE_FLAG, os.path.basename(path), output_dir)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        return
    if resuming:
        return
    evidence = finished_training_files(output_dir)
    if evidence:
        error = finished_run_error(
            "llava.train", output_dir, evidence, "give a new --output_dir (or --resume_from_checkpoint to continue it)"
        )
        raise LaunchError(str(error))
