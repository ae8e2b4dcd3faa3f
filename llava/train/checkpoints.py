"""Crash-safe checkpoints: a `checkpoint-N` counts only once its completion marker exists, and a
run resumes only from one whose files are still what was written.

The trainer writes the marker (`llava.train.checkpoint_marker`: the size and SHA-256 of every
file) after every rank has finished writing its part of the checkpoint (model, optimizer shards,
scheduler, RNG and trainer state), and only if the weights are finite, so a run that dies while
saving, or that diverged, leaves a folder without a marker, which resume never picks.

Auto-resume takes the newest marked checkpoint in `--output_dir` whose files match the marker. A
damaged one (truncated, emptied, a shard missing, other contents) is reported file by file before
anything is loaded and, when an older complete checkpoint is usable, renamed
`damaged-checkpoint-N` (kept for inspection, out of the way of resume and rotation) and the older
one is used. An explicit `--resume_from_checkpoint PATH` must be marked and intact.

    python -m llava.train.checkpoints verify DIR [--sizes-only]

checks by hand a checkpoint, or every checkpoint of an output dir: one line per problem on stdout,
exit status 0 (all intact), 1 (problems) or 2 (nothing to check).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys

from llava.constants import MM_PROJECTOR_FILE, MODEL_WEIGHT_FILES, VISION_TOWER_FILE
from llava.train.checkpoint_marker import (
    COMPLETE_MARKER,
    MarkerError,
    checkpoint_problems,
    read_marker,
    recorded_size,
)
from llava.train.collectives import barrier, rank_and_world
from llava.train.preflight import LaunchError
from llava.train.save_layout import SaveLayout

logger = logging.getLogger(__name__)

# transformers.trainer_utils.PREFIX_CHECKPOINT_DIR, spelled out: importing it costs the command line
# about 10 s (it pulls in peft and the whole Trainer).
PREFIX_CHECKPOINT_DIR = "checkpoint"

_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_YES = {"true", "yes", "1", "latest"}
_NO = {"false", "no", "0", "none", ""}


def is_complete(checkpoint_dir: str) -> bool:
    return os.path.isfile(os.path.join(checkpoint_dir, COMPLETE_MARKER))


def saved_layout(checkpoint_dir: str) -> SaveLayout:
    """The layout a checkpoint (or final output) was written in, from its files; checkpoints written
    before layouts were recorded read the same (a stage-1 one is `PROJECTOR`)."""
    names = set(os.listdir(checkpoint_dir))
    if "adapter_config.json" in names:
        return SaveLayout.LORA
    if MM_PROJECTOR_FILE in names and not names & MODEL_WEIGHT_FILES:
        return SaveLayout.PROJECTOR_AND_TOWER if VISION_TOWER_FILE in names else SaveLayout.PROJECTOR
    return SaveLayout.FULL


def is_partial(checkpoint_dir: str) -> bool:
    """A checkpoint with `mm_projector.bin` (and the vision tower, if it trained) and no weights of
    the whole model: resuming rebuilds the frozen rest from --model_name_or_path."""
    return saved_layout(checkpoint_dir).is_partial


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
    return latest


def _is_explicit_path(resume_from_checkpoint: str | None) -> bool:
    value = None if resume_from_checkpoint is None else str(resume_from_checkpoint).strip().lower()
    return value is not None and value not in _YES | _NO


class DamagedCheckpointError(LaunchError):
    """No checkpoint to resume from is intact."""


def _is_main() -> bool:
    return rank_and_world()[0] == 0


def _problems(checkpoint_dir: str, checksums: bool) -> list[str]:
    problems, recorded = checkpoint_problems(checkpoint_dir, checksums)
    if not recorded and not problems and _is_main():
        logger.warning(
            "%s was marked complete by an earlier version, whose marker records no sizes or checksums: its "
            "files were checked by reading their headers only",
            checkpoint_dir,
        )
    return problems


def _listing(problems: dict[str, list[str]]) -> str:
    return "\n".join(f"  {line}" for lines in problems.values() for line in lines)


def _set_aside(damaged: dict[str, list[str]], chosen: str) -> None:
    """Rank 0 renames each damaged checkpoint `damaged-checkpoint-N`: kept for inspection, and out of
    the way of resume, of rotation and of the run's next save at that step."""
    for path, problems in damaged.items():
        base = os.path.join(os.path.dirname(path), f"damaged-{os.path.basename(path)}")
        target, copies = base, 1
        while os.path.exists(target):  # set aside before, by an earlier run
            copies += 1
            target = f"{base}.{copies}"
        if _is_main():
            os.rename(path, target)
            logger.warning(
                "checkpoint %s is damaged, skipped:\n%s\nmoved to %s (kept for inspection); resuming from %s instead",
                path, _listing({path: problems}), target, chosen,
            )
    barrier()


def choose_resume_checkpoint(
    resume_from_checkpoint: str | None, output_dir: str, auto_resume: bool, checksums: bool = True
) -> str | None:
    """`resolve_resume_checkpoint`'s choice once its files are checked against its marker (SHA-256,
    or sizes and headers without `checksums`), before anything is loaded. Without an explicit path,
    damaged checkpoints are reported, set aside, and the newest intact older one is used. Raises
    DamagedCheckpointError, naming every damaged file, when none is intact (an explicit path must be).
    A collective under torch.distributed: every rank calls it."""
    chosen = resolve_resume_checkpoint(resume_from_checkpoint, output_dir, auto_resume)
    if chosen is None:
        return None
    explicit = _is_explicit_path(resume_from_checkpoint)
    candidates = [chosen] if explicit else [p for _, p in reversed(list_checkpoints(output_dir)) if is_complete(p)]
    damaged: dict[str, list[str]] = {}
    for candidate in candidates:
        problems = _problems(candidate, checksums)
        if not problems:
            break
        damaged[candidate] = problems
    else:
        if explicit:
            raise DamagedCheckpointError(
                f"--resume_from_checkpoint {chosen}: the checkpoint is damaged (changed since it was written: a "
                f"full disk, an interrupted copy):\n{_listing(damaged)}\nDrop the flag to let auto-resume take the "
                "newest intact checkpoint, or pass --resume_from_checkpoint False to start over."
            )
        raise DamagedCheckpointError(
            f"cannot resume: every complete checkpoint in {output_dir} is damaged (changed since it was written: a "
            f"full disk, an interrupted copy):\n{_listing(damaged)}\nRestore these files from a copy, or pass "
            "--resume_from_checkpoint False to start over."
        )
    if damaged:
        _set_aside(damaged, candidate)
    if resume_from_checkpoint is None and _is_main():  # say it loudly: the user did not ask for it
        logger.warning(
            "auto-resuming from %s, the newest intact complete checkpoint in %s (pass --auto_resume False to "
            "start over)", candidate, output_dir,
        )
    elif _is_main():
        logger.info("resuming from %s", candidate)
    return candidate


def checkpoint_size_hint(output_dir: str) -> int | None:
    """Bytes of the newest complete checkpoint of `output_dir` (from its marker, else its files):
    about what the next checkpoint needs."""
    latest = latest_complete_checkpoint(output_dir)
    if latest is None:
        return None
    recorded = recorded_size(latest)
    if recorded is not None:
        return recorded
    return sum(os.path.getsize(os.path.join(root, n)) for root, _, names in os.walk(latest) for n in names)


def _looks_like_checkpoint(path: str) -> bool:
    name = os.path.basename(os.path.normpath(path))
    return is_complete(path) or bool(_CHECKPOINT_NAME.match(name.removeprefix("damaged-").split(".")[0]))


def verify_command(path: str, checksums: bool) -> int:
    """`verify PATH`: problems on stdout (one line each), a verdict per checkpoint on stderr."""
    if not os.path.isdir(path):
        print(f"verify: {path}: no such folder", file=sys.stderr)
        return 2
    targets = [path] if _looks_like_checkpoint(path) else [p for _, p in list_checkpoints(path)]
    if not targets:
        print(f"verify: {path} is not a checkpoint and holds no {PREFIX_CHECKPOINT_DIR}-N folders", file=sys.stderr)
        return 2
    damaged = 0
    for target in targets:
        if not is_complete(target):
            print(f"{target}: incomplete: no {COMPLETE_MARKER} (the run stopped while writing it; resume ignores it)")
            damaged += 1
            continue
        try:
            read_marker(target)
        except MarkerError as err:
            print(err)
            damaged += 1
            continue
        problems, recorded = checkpoint_problems(target, checksums)
        for line in problems:
            print(line)
        damaged += bool(problems)
        how = ("SHA-256" if checksums else "sizes and headers") if recorded else "headers (marker of an earlier version)"
        verdict = f"{len(problems)} damaged file(s)" if problems else "intact"
        print(f"{target}: {verdict} (checked: {how})", file=sys.stderr)
    return 1 if damaged else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llava.train.checkpoints", description="Check training checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify", help="check a checkpoint (or every checkpoint of an output dir) against its completion marker"
    )
    verify.add_argument("path", help="a checkpoint-N folder, or an --output_dir holding checkpoint-N folders")
    verify.add_argument(
        "--sizes-only", action="store_true",
        help="compare sizes and read headers instead of hashing every file (seconds, even for tens of GB)",
    )
    args = parser.parse_args(argv)
    raise SystemExit(verify_command(args.path, checksums=not args.sizes_only))


if __name__ == "__main__":
    main()
