"""Refuse to evaluate into an output folder that already holds that benchmark's finished run.

A dataset's run is finished once its merged predictions `OUT/<dataset>.tsv` exist: they are written
only when every row of every chunk is answered (`run_benchmark.merge_chunks`). A folder with chunk
files and no merged file is an unfinished run, which a rerun resumes as before.

`--overwrite_output_dir` answers the datasets afresh: this process removes their merged, scored
and accuracy files, its own chunk file and chunk files of another sharding (never another live
rank's chunk), so no answer of the earlier run is reused. Summaries of the benchmark are merged
(`llava.eval.summary`): the datasets answered again replace their entries.
"""

from __future__ import annotations

import logging
from pathlib import Path

from llava.output_dir import OVERWRITE_FLAG, finished_run_error

logger = logging.getLogger(__name__)


def finished_datasets(output_dir: Path, names: list[str]) -> list[str]:
    """The merged predictions files (`<dataset>.tsv`) of `names` already in `output_dir`."""
    return [f"{name}.tsv" for name in names if (output_dir / f"{name}.tsv").is_file()]


def _stale_files(output_dir: Path, name: str, num_chunks: int, chunk_idx: int) -> list[Path]:
    outputs = [output_dir / f"{name}{suffix}" for suffix in (".tsv", "_result.tsv", "_acc.csv")]
    chunks = [
        path
        for path in (output_dir / "chunks").glob(f"{name}.chunk*of*.tsv")
        if path.name == f"{name}.chunk{chunk_idx}of{num_chunks}.tsv" or not path.name.endswith(f"of{num_chunks}.tsv")
    ]
    return [path for path in outputs + chunks if path.is_file()]


def guard_eval_output_dir(
    output_dir: Path, names: list[str], *, overwrite: bool, num_chunks: int = 1, chunk_idx: int = 0
) -> None:
    """Raise `FinishedRunError` when a dataset of `names` is finished in `output_dir`, unless `overwrite`;
    with `overwrite`, remove what this process may of the earlier runs of `names`."""
    if not overwrite:
        evidence = finished_datasets(output_dir, names)
        if evidence:
            raise finished_run_error(
                "llava.eval.run_benchmark", output_dir, evidence, "give a new --output-dir"
            )
        return
    for name in names:
        for path in _stale_files(output_dir, name, num_chunks, chunk_idx):
            logger.warning("%s: removing %s of the earlier run", OVERWRITE_FLAG, path)
            path.unlink(missing_ok=True)  # another rank may have removed a merged file first
