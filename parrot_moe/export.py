"""parrot_moe's piece of `python -m llava.model.convert to-hf`: the projector as remote code.

The folder gets `moe_block.py`, `router.py` and `experts.py` byte for byte (they import only torch
and each other), plus whatever the base projector's export ships; config.json's `parrot_projector`
holds the resolved settings, the routing query and the base's spec. Tensor keys stay ours (`moe.*`
and the base's own, renamed the way the base's export renames them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = HERE / "moe_block.py"
FILES = (MODULE, HERE / "router.py", HERE / "experts.py")


def export_parrot_moe(projector, num_patches: int, export_of):
    """The `RemoteExport` of a built `ParrotMoeProjector` (the `export` hook of its `ProjectorSpec`)."""
    from llava.model.convert.remote import RemoteExport

    settings = projector.settings
    base = export_of(settings.base_projector, projector.base, num_patches)
    rows = None if projector.router_query == "cls" else projector._summary_rows(num_patches)
    spec = {
        "type": "parrot_moe",
        "settings": dataclasses.asdict(settings),
        "router_query": projector.router_query,
        "emits_cls": projector.emits_cls,
        "summary_rows": None if rows is None else [rows.start, rows.stop],
        "base": base.spec,
    }
    return RemoteExport(
        spec=spec,
        modules={**base.modules, "parrot_moe": MODULE},
        files=(*base.files, *FILES),
        renames=base.renames,
    )
