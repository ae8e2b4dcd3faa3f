"""A full disk (or an exhausted quota) while saving stops the run with the path and the space needed.

The checkpoint being written never gets its completion marker, and older checkpoints are only
rotated away after a new one is marked, so the newest complete checkpoint stays intact and is the
one the next run resumes from.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from llava.train.checkpoints import checkpoint_size_hint, latest_complete_checkpoint

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(RuntimeError):
    """No space left (or no quota left) while writing a checkpoint or the final model."""


def _size(num_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if num_bytes < 1000 or unit == "TB":
            return f"{num_bytes:.0f} {unit}" if unit == "bytes" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000
    raise AssertionError("unreachable")


def _bytes_under(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, n)) for root, _, names in os.walk(path) for n in names)


def disk_full_message(err: OSError, target: str, output_dir: str, what: str) -> str:
    """What failed, where, how much space a checkpoint of this run takes, what is free, what to do."""
    known = checkpoint_size_hint(output_dir)
    written = _bytes_under(target) if os.path.exists(target) else 0
    needed = (f"a checkpoint of this run takes about {_size(known)} (the newest complete one)" if known
              else f"it needs more than the {_size(written)} written before the disk filled")
    free = shutil.disk_usage(output_dir if os.path.isdir(output_dir) else os.path.dirname(output_dir) or ".").free
    newest = latest_complete_checkpoint(output_dir)
    kept = (f"{newest} is intact, and the next run resumes from it" if newest
            else "there is no complete checkpoint yet")
    return (
        f"{what}: {err.strerror or 'no space left'} while writing {err.filename or target}; {needed}, and "
        f"{_size(free)} are free there. Nothing was marked complete: {kept}. Free space on that filesystem (or "
        "point --output_dir at a larger one, or lower --save_total_limit) and run the same command again"
    )


@contextmanager
def stop_when_disk_full(target: str, output_dir: str, what: str, remove_partial: bool) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside into DiskFullError; with `remove_partial` the half-written
    `target` (a checkpoint folder) is deleted afterwards to give the space back."""
    try:
        yield
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise
        message = disk_full_message(err, target, output_dir, what)
        if remove_partial and os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)
            message += f" (the partial {target} was removed)"
        raise DiskFullError(message) from err
