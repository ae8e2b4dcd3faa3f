"""Training flags of the ParGo projector. `llava/train/train.py` finds this dataclass through the
`ProjectorSpec`, parses `--pargo_*` with the core flags and saves every value in `config.json` under
the flag's name. Defaults are the release's shapes: 288 partial + 16 global queries over the 24x24
patch grid of CLIP ViT-L/14-336, and a "bert-small"-sized Q-Former (4 layers, width 512, 8 heads)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PargoArguments:
    pargo_layers: int = field(default=4, metadata={"help": "Q-Former layers (self-attn, cross-attn, MLP each)."})
    pargo_hidden_size: int = field(default=512, metadata={"help": "Q-Former width (its MLP is 4x this)."})
    pargo_heads: int = field(default=8, metadata={"help": "Attention heads; must divide --pargo_hidden_size."})
    pargo_num_partial_queries: int = field(
        default=288, metadata={"help": "Partial queries P: one per window of patches (first in the output)."}
    )
    pargo_num_global_queries: int = field(
        default=16, metadata={"help": "Global queries G: they see every patch (last in the output)."}
    )
    pargo_window: str | None = field(
        default=None,
        metadata={"help": "Window of one partial query as HxW patches; default: derived from the grid and P."},
    )
