"""No silent overwrites: a command whose output folder already holds a finished run refuses to
write into it unless `--overwrite_output_dir` is given (transformers' convention).

What "finished" means is the command's own business (the files it writes at its very end); this
module only words the refusal the same way for every command.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

OVERWRITE_FLAG = "--overwrite_output_dir"


class FinishedRunError(ValueError):
    """The output folder holds a finished run and the command was not told to overwrite it."""


def finished_run_error(command: str, output_dir: str | os.PathLike, evidence: Iterable[str], hint: str) -> FinishedRunError:
    """The refusal: names the folder, the files that show the run finished, the flag and the other way out."""
    files = ", ".join(sorted(evidence))
    return FinishedRunError(
        f"{command}: the output folder {os.fspath(output_dir)} already holds a finished run ({files}); "
        f"refusing to overwrite it. Pass {OVERWRITE_FLAG} to replace it, or {hint}."
    )
