"""Parrot MoE settings: the `moe_*` fields of a model config, their defaults and their validation.

The flag names and defaults are declared once, in `parrot_moe.arguments.ParrotMoeArguments`; the
training CLI exposes each as `--<name>` and writes it into `config.json` under the same name, so
`ParrotMoeSettings.from_config(config)` rebuilds the same projector from a saved checkpoint.
A `None` default means "derived": `moe_top_k` -> all experts (dense), `moe_intermediate_size` ->
`hidden_size`, `moe_alpha` -> 1.0 under `paper` and 0.1 under `official`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from parrot_moe.arguments import ParrotMoeArguments

logger = logging.getLogger(__name__)

EXPERT_TYPES = ("mlp_silu", "swiglu")
RESIDUAL_MODES = ("paper", "official")
SELECT_FEATURES = ("patch", "cls_patch")
GUIDANCE_NORMS = ("none", "layernorm")
DEFAULT_ALPHA = {"paper": 1.0, "official": 0.1}

# The defaults of the `moe_*` flags, read from the one place that declares them (the flags dataclass).
MOE_DEFAULTS: dict[str, object] = {
    f.name: f.default for f in dataclasses.fields(ParrotMoeArguments) if f.name.startswith("moe_")
}


def _field(config: object, name: str) -> object:
    value = getattr(config, name, None)
    return MOE_DEFAULTS[name] if value is None else value


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"--{name} {value!r} is not supported; choose one of {', '.join(choices)}")
    return str(value)


@dataclass(frozen=True)
class ParrotMoeSettings:
    """Resolved settings of one Parrot projector (no `None` left).

    `hidden_size` is the LLM width C, `vision_hidden_size` the vision width D, `emit_cls` whether the
    projected CLS row is returned as a visual token (`mm_vision_select_feature cls_patch`; only a
    base projector with a CLS row has one), `base_projector` the projector type under the experts.
    """

    base_projector: str
    vision_hidden_size: int
    hidden_size: int
    emit_cls: bool
    num_experts: int
    top_k: int
    renormalize_top_k: bool
    expert_type: str
    intermediate_size: int
    residual_mode: str
    alpha: float
    aux_loss_coef: float
    guidance_norm: str = "none"
    router_temperature: float = 1.0

    @classmethod
    def from_config(cls, config: object) -> ParrotMoeSettings:
        """Read `mm_hidden_size`, `hidden_size`, `mm_vision_select_feature` and the `moe_*` fields."""
        for required in ("mm_hidden_size", "hidden_size"):
            if getattr(config, required, None) is None:
                raise ValueError(
                    f"the parrot_moe projector needs config.{required}; build it from a model config "
                    f"(config.json) that has {required} set"
                )
        hidden_size = int(config.hidden_size)
        select = _choice(
            "mm_vision_select_feature",
            getattr(config, "mm_vision_select_feature", None) or "patch",
            SELECT_FEATURES,
        )
        num_experts = int(_field(config, "moe_num_experts"))
        if num_experts < 1:
            raise ValueError(f"--moe_num_experts must be at least 1, got {num_experts}")
        top_k = _field(config, "moe_top_k")
        top_k = num_experts if top_k is None else int(top_k)
        if not 1 <= top_k <= num_experts:
            raise ValueError(
                f"--moe_top_k {top_k} is out of range: use 1..{num_experts} (--moe_num_experts), "
                f"or leave it unset for dense routing over all experts"
            )
        intermediate_size = _field(config, "moe_intermediate_size")
        intermediate_size = hidden_size if intermediate_size is None else int(intermediate_size)
        if intermediate_size < 1:
            raise ValueError(f"--moe_intermediate_size must be positive, got {intermediate_size}")
        residual_mode = _choice("moe_residual_mode", _field(config, "moe_residual_mode"), RESIDUAL_MODES)
        alpha = _field(config, "moe_alpha")
        aux_loss_coef = float(_field(config, "moe_aux_loss_coef"))
        if aux_loss_coef < 0:
            raise ValueError(f"--moe_aux_loss_coef must be >= 0, got {aux_loss_coef}")
        temperature = float(_field(config, "moe_router_temperature"))
        if not temperature > 0:
            raise ValueError(f"--moe_router_temperature must be > 0, got {temperature}; 1.0 is the paper's router")
        renormalize_top_k = bool(_field(config, "moe_renormalize_top_k"))
        if renormalize_top_k and top_k == 1:
            logger.warning(
                "--moe_renormalize_top_k with --moe_top_k 1 gives every sample weight 1, so the router gets "
                "no gradient from the LM loss; drop --moe_renormalize_top_k or use --moe_top_k >= 2"
            )
        return cls(
            base_projector=str(_field(config, "moe_base_projector")),
            vision_hidden_size=int(config.mm_hidden_size),
            hidden_size=hidden_size,
            emit_cls=select == "cls_patch",
            num_experts=num_experts,
            top_k=top_k,
            renormalize_top_k=renormalize_top_k,
            expert_type=_choice("moe_expert_type", _field(config, "moe_expert_type"), EXPERT_TYPES),
            intermediate_size=intermediate_size,
            residual_mode=residual_mode,
            alpha=float(DEFAULT_ALPHA[residual_mode] if alpha is None else alpha),
            aux_loss_coef=aux_loss_coef,
            guidance_norm=_choice("moe_guidance_norm", _field(config, "moe_guidance_norm"), GUIDANCE_NORMS),
            router_temperature=temperature,
        )
