"""Make `python llava/train/train.py --deepspeed ...` work without a launcher.

DeepSpeed expects the environment that `deepspeed`/`torchrun` set (RANK, WORLD_SIZE, MASTER_ADDR,
...); without it, it falls back to MPI discovery and fails with "No module named 'mpi4py'". A plain
`python` launch is a single process, so we say so explicitly before DeepSpeed looks.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_single_process_env(argv: list[str]) -> None:
    """With `--deepspeed` and no launcher variables, describe a one-process world on this host."""
    uses_deepspeed = any(a == "--deepspeed" or a.startswith("--deepspeed=") for a in argv)
    if not uses_deepspeed or any(v in os.environ for v in LAUNCHER_VARIABLES):
        return
    os.environ.update(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", str(_free_port())),
    )
    logger.info("--deepspeed without a launcher: running as a single process (use deepspeed/torchrun for more)")
