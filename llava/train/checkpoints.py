"""Crash-safe checkpoints: a `checkpoint-N` counts only once its completion marker exists.

The trainer writes the marker after every rank has finished writing its part of the checkpoint
(model, optimizer shards, scheduler, RNG and trainer state), and only if the weights are finite, so
a run that dies while saving, or that diverged, leaves a folder without a marker, which resume never
picks. Auto-resume takes the newest marked checkpoint in `--output_dir`; an explicit
`--resume_from_checkpoint` must point at a marked one. Before resuming, every file of the chosen
checkpoint is opened (headers only), so one damaged after it was marked is named with what to do,
instead of failing deep inside the loader.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile

from safetensors import SafetensorError, safe_open
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from llava.constants import MM_PROJECTOR_FILE
from llava.train.preflight import LaunchError

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "checkpoint_complete.json"
_MODEL_WEIGHT_FILES = {
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"
}
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_YES = {"true", "yes", "1", "latest"}
_NO = {"false", "no", "0", "none", ""}


def mark_complete(checkpoint_dir: str, global_step: int) -> None:
    """Write the marker atomically (temp file, fsync, rename): it exists whole or not at all."""
    path = os.path.join(checkpoint_dir, COMPLETE_MARKER)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"global_step": global_step}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_complete(checkpoint_dir: str) -> bool:
    return os.path.isfile(os.path.join(checkpoint_dir, COMPLETE_MARKER))


def is_projector_only(checkpoint_dir: str) -> bool:
    """A stage-1 checkpoint: `mm_projector.bin` and no weights of the whole model."""
    names = set(os.listdir(checkpoint_dir))
    return MM_PROJECTOR_FILE in names and not names & _MODEL_WEIGHT_FILES


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """(step, path) of every `checkpoint-N` folder in `output_dir`, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_NAME.match(name)
        path = os.path.join(output_dir, name)
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_complete_checkpoint(output_dir: str) -> str | None:
    complete = [path for _, path in list_checkpoints(output_dir) if is_complete(path)]
    return complete[-1] if complete else None


def remove_incomplete_checkpoints(output_dir: str) -> list[str]:
    """Delete unmarked `checkpoint-N` folders (left by a crash while saving); returns their paths."""
    removed = [path for _, path in list_checkpoints(output_dir) if not is_complete(path)]
    for path in removed:
        logger.warning("removing incomplete %s (no %s: the run stopped while writing it)", path, COMPLETE_MARKER)
        shutil.rmtree(path, ignore_errors=True)
    return removed


def resolve_resume_checkpoint(resume_from_checkpoint: str | None, output_dir: str, auto_resume: bool) -> str | None:
    """The checkpoint to resume from, or None to start fresh.

    - `--resume_from_checkpoint PATH`: PATH, which must be a complete checkpoint;
    - `--resume_from_checkpoint True`: the newest complete checkpoint in `--output_dir` (must exist);
    - `--resume_from_checkpoint False`: start fresh;
    - not given: the newest complete checkpoint when `--auto_resume` (default) finds one.
    """
    value = None if resume_from_checkpoint is None else str(resume_from_checkpoint).strip()
    if value is not None and value.lower() in _NO:
        return None
    if value is not None and value.lower() not in _YES:
        if not os.path.isdir(value):
            raise LaunchError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
        if not is_complete(value):
            newest = latest_complete_checkpoint(os.path.dirname(os.path.normpath(value)))
            hint = f"resume from {newest} instead" if newest else "start fresh by dropping the flag"
            raise LaunchError(
                f"--resume_from_checkpoint {value}: incomplete checkpoint (no {COMPLETE_MARKER}; the run "
                f"stopped while saving it); {hint}"
            )
        return value
    latest = latest_complete_checkpoint(output_dir)
    if value is not None and latest is None:
        raise LaunchError(
            f"--resume_from_checkpoint {value}: no complete checkpoint-* in --output_dir {output_dir}"
        )
    if latest is None or not (auto_resume or value is not None):
        return None
    if value is None:  # say it loudly: the user did not ask for it on this command line
        logger.warning(
            "auto-resuming from %s, the newest complete checkpoint in %s (pass --auto_resume False to start over)",
            latest,
            output_dir,
        )
    else:
        logger.info("resuming from %s, the newest complete checkpoint in %s", latest, output_dir)
    return latest


class DamagedCheckpointError(LaunchError):
    """A file of the checkpoint to resume from cannot be read."""


def _unreadable(path: str) -> str | None:
    """Why `path` cannot be read, or None. Reads headers only: a safetensors header and its promise
    of the file's length, the zip directory at the end of a torch.save file, a JSON document."""
    try:
        if path.endswith(".safetensors"):
            with safe_open(path, framework="pt"):
                pass
        elif path.endswith((".pt", ".pth", ".bin")):
            with zipfile.ZipFile(path):
                pass
        elif path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                json.load(f)
    except (SafetensorError, zipfile.BadZipFile, ValueError, OSError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def verify_checkpoint_files(checkpoint_dir: str) -> None:
    """Raise DamagedCheckpointError naming the first file of `checkpoint_dir` that cannot be read,
    with the way out: the previous complete checkpoint, or starting over."""
    for root, _, names in sorted(os.walk(checkpoint_dir)):
        for name in sorted(names):
            path = os.path.join(root, name)
            reason = _unreadable(path)
            if reason is None:
                continue
            output_dir = os.path.dirname(os.path.realpath(checkpoint_dir))
            others = [
                p for _, p in list_checkpoints(output_dir)
                if is_complete(p) and os.path.realpath(p) != os.path.realpath(checkpoint_dir)
            ]
            way_out = (
                f"resume from {others[-1]} with --resume_from_checkpoint {others[-1]}, or move {checkpoint_dir} "
                f"out of {output_dir} and rerun (auto-resume then takes {others[-1]})"
                if others
                else f"move {checkpoint_dir} out of {output_dir}, or pass --resume_from_checkpoint False, to start over"
            )
            raise DamagedCheckpointError(
                f"cannot resume: {path} is damaged ({reason}); the checkpoint was complete when it was written, "
                f"so the file changed since (a full disk, an interrupted copy). {way_out[0].upper()}{way_out[1:]}."
            )
