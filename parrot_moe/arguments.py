"""Training flags of the plugin. `llava/train/train.py` finds them through the `ProjectorSpec`, parses
`--moe_*` / `--freeze_moe` (and, since the spec stacks on `moe_base_projector`, the flags of that base
projector) with the core flags, and saves every value in `config.json` under the flag's name."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ParrotMoeArguments:
    moe_base_projector: str = field(
        default="mlp2x_gelu",
        metadata={"help": "Base projector H_v = base(Z_v) that the experts transform: any registered type "
                  "(mlp2x_gelu as in the paper, pargo, ...)."},
    )
    moe_num_experts: int = field(default=6, metadata={"help": "Experts E (one per language in the paper)."})
    moe_top_k: int | None = field(default=None, metadata={"help": "Experts run per sample; default E (dense)."})
    moe_renormalize_top_k: bool = field(default=False, metadata={"help": "Renormalise the selected P[i]."})
    moe_expert_type: str = field(default="mlp_silu", metadata={"help": "mlp_silu (paper) | swiglu (authors' code)"})
    moe_intermediate_size: int | None = field(default=None, metadata={"help": "Expert width I; default C."})
    moe_residual_mode: str = field(default="paper", metadata={"help": "paper: H+a*MoE(H) | official: MoE(H)+a*H"})
    moe_alpha: float | None = field(default=None, metadata={"help": "Residual weight; default 1.0 paper, 0.1 official."})
    moe_guidance_norm: str = field(
        default="none",
        metadata={"help": "none (paper, authors' code): the router reads H'_v as is | layernorm: standardised "
                  "(no learned scale), so the router's logit scale does not depend on the word embeddings' norm"},
    )
    moe_router_temperature: float = field(
        default=1.0, metadata={"help": "P = softmax(logits / T); 1.0 as in the paper. Below 1 sharpens routing."}
    )
    moe_aux_loss_coef: float = field(default=0.0, metadata={"help": "Load-balancing loss weight (0 = off)."})
    freeze_moe: bool | None = field(
        default=None, metadata={"help": "Override stage control: True freezes the MoE, False trains it in stage 1 too."}
    )
