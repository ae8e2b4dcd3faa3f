"""pargo's piece of `python -m llava.model.convert to-hf`: the Q-Former as remote code.

The folder gets `qformer.py`, `layers.py` and `masks.py` byte for byte (they import only torch and
each other); config.json's `parrot_projector` holds the resolved settings. Tensor keys stay ours.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = HERE / "qformer.py"
FILES = (MODULE, HERE / "layers.py", HERE / "masks.py")


def export_pargo(projector, num_patches: int, export_of):
    """The `RemoteExport` of a built `PargoProjector` (the `export` hook of its `ProjectorSpec`)."""
    from llava.model.convert.remote import RemoteExport

    projector.layout(num_patches)  # a grid the partial queries cannot tile is refused here
    return RemoteExport(
        spec={"type": "pargo", "settings": dataclasses.asdict(projector.settings)},
        modules={"pargo": MODULE},
        files=FILES,
    )
