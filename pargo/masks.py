"""ParGo's attention masks, the same in every layer, built once per shape (cached) and vectorised.

Queries are ordered partial first (P), then global (G). Boolean masks, True where attention is
allowed, as `torch.nn.functional.scaled_dot_product_attention` takes them:

- cross-attention (P+G, N): partial query i sees only window i of the patch grid; the grid is cut
  into P windows of H x W patches, numbered in raster order (left to right, then top to bottom),
  and patches are numbered in raster order too. Global queries see every patch.
- self-attention (P+G, P+G): block-diagonal, partial <-> partial and global <-> global.

With 576 patches (24 x 24) and P = 288 the derived window is 1 x 2: two horizontally adjacent
patches, exactly the release's split of the flattened patch sequence into 288 runs of 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class WindowLayout:
    """A square patch grid of `grid` x `grid` cut into windows of `window_h` x `window_w` patches."""

    grid: int
    window_h: int
    window_w: int

    @property
    def num_windows(self) -> int:
        return (self.grid // self.window_h) * (self.grid // self.window_w)


def _derived_window(grid: int, per_window: int) -> tuple[int, int] | None:
    """The release's split of the raster sequence into runs of `per_window` patches, as a rectangle:
    part of one row (1 x k, k dividing the row) or whole rows (m x grid, m dividing the rows)."""
    if grid % per_window == 0:
        return 1, per_window
    if per_window % grid == 0 and grid % (per_window // grid) == 0:
        return per_window // grid, grid
    return None


@lru_cache(maxsize=64)
def window_layout(num_patches: int, num_partial: int, window: tuple[int, int] | None) -> WindowLayout | None:
    """Check that `num_partial` windows (of shape `window`, or derived) tile the patch grid.

    Returns None when there are no partial queries. Raises ValueError naming the flag to change.
    """
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f"pargo needs a square patch grid, but the vision tower gives {num_patches} patches")
    if num_partial == 0:
        return None
    if window is None:
        derived = _derived_window(grid, num_patches // num_partial) if num_patches % num_partial == 0 else None
        if derived is None:
            tiling = [p for p in range(1, num_patches + 1) if num_patches % p == 0 and _derived_window(grid, num_patches // p)]
            raise ValueError(
                f"--pargo_num_partial_queries {num_partial} does not tile the {grid}x{grid} patch grid in raster "
                f"order; use one of {tiling}, or set --pargo_window HxW with windows that tile it"
            )
        window = derived
    window_h, window_w = window
    if grid % window_h or grid % window_w:
        raise ValueError(
            f"--pargo_window {window_h}x{window_w} does not divide the {grid}x{grid} patch grid; "
            f"both sides must divide {grid}"
        )
    layout = WindowLayout(grid, window_h, window_w)
    if layout.num_windows != num_partial:
        raise ValueError(
            f"--pargo_window {window_h}x{window_w} cuts the {grid}x{grid} patch grid into {layout.num_windows} "
            f"windows, but --pargo_num_partial_queries is {num_partial}; make them equal"
        )
    return layout


@lru_cache(maxsize=64)
def cross_attention_mask(
    layout: WindowLayout | None, num_patches: int, num_global: int, device: torch.device
) -> torch.Tensor:
    """(P+G, N) bool: row i < P is True on the patches of window i; the G global rows are all True."""
    global_rows = torch.ones(num_global, num_patches, dtype=torch.bool, device=device)
    if layout is None:
        return global_rows
    rows = torch.arange(layout.grid, device=device) // layout.window_h
    cols = torch.arange(layout.grid, device=device) // layout.window_w
    windows_per_row = layout.grid // layout.window_w
    window_of_patch = (rows[:, None] * windows_per_row + cols[None, :]).flatten()  # (N,) raster order
    partial_rows = torch.arange(layout.num_windows, device=device)[:, None] == window_of_patch[None, :]
    return torch.cat([partial_rows, global_rows])


@lru_cache(maxsize=64)
def self_attention_mask(num_partial: int, num_global: int, device: torch.device) -> torch.Tensor:
    """(P+G, P+G) bool, block-diagonal: partial queries attend to partial ones, global to global."""
    is_global = torch.arange(num_partial + num_global, device=device) >= num_partial
    return is_global[:, None] == is_global[None, :]
