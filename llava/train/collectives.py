"""The few collectives the fault handling needs, each a no-op in a single process.

Every rank must call a collective at the same point with the same arguments' shape; the callers
(checkpoint verification, the step guard) make every rank take the same path for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
R = TypeVar("R")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def on_any_rank(flags: list[bool], device: torch.device | str) -> list[bool]:
    """Each flag OR-ed over all ranks (a collective: every rank calls it with as many flags)."""
    if not is_distributed():
        return flags
    values = torch.tensor([float(flag) for flag in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


def gather_rows(values: list[float], device: torch.device | str) -> list[list[float]]:
    """Every rank's `values` (same length on each), indexed by rank: one all_gather of a small tensor."""
    if not is_distributed():
        return [values]
    local = torch.tensor(values, dtype=torch.float64, device=device)
    rows = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(rows, local)
    return [row.tolist() for row in rows]


def gather_objects(value: T) -> list[T]:
    """Every rank's picklable `value`, indexed by rank."""
    if not is_distributed():
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def from_rank_zero(value: T) -> T:
    """Rank 0's `value` on every rank (e.g. a directory listing, so all ranks work on one list)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def map_shared(items: list[T], work: Callable[[T], R]) -> dict[T, R]:
    """`work` over `items` shared out across the ranks (rank r takes every world-th item from r),
    with every result on every rank."""
    rank, world = rank_and_world()
    merged: dict[T, R] = {}
    for part in gather_objects({item: work(item) for item in items[rank::world]}):
        merged.update(part)
    return merged
