"""The Parrot MoE itself (Eq 2-5), free of the llava core: the block that routes and runs the experts,
how the routing query and the transformed tokens are read from the base projector's output, and the
residual. `parrot_moe.projector.ParrotMoeProjector` runs these; `python -m llava.model.convert to-hf`
copies this file (with `router.py` and `experts.py`, which it imports relatively) into exported
folders, where `RemoteParrotMoeProjector` runs the same code under transformers' remote-code loader.

`settings` is a `parrot_moe.config.ParrotMoeSettings`, or any object with its fields (an exported
folder keeps them in its config.json).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn as nn

from .experts import make_experts
from .router import TextGuidedRouter, route_by_text, select_experts


class ParrotMoeBlock(nn.Module):
    """Router + experts (Eq 2-4), Mixtral's block shape with one routing decision per sample.

    forward(hidden (B, N, C), query (B, C), text_embeds (B, T, C) | None, text_mask (B, T) | None)
    -> (MoE(hidden) (B, N, C), routing probabilities P (B, E)).
    """

    def __init__(self, settings: object) -> None:
        super().__init__()
        self.top_k = settings.top_k
        self.renormalize_top_k = settings.renormalize_top_k
        self.router = TextGuidedRouter(
            settings.hidden_size, settings.num_experts, settings.guidance_norm, settings.router_temperature
        )
        self.experts = make_experts(
            settings.num_experts, settings.hidden_size, settings.intermediate_size, settings.expert_type
        )

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Fresh router and experts; for loaders that build on the meta device and skip unknown params."""
        self.router.gate.reset_parameters()
        self.experts.reset_parameters()

    def forward(
        self,
        hidden: torch.Tensor,
        query: torch.Tensor,
        text_embeds: torch.Tensor | None,
        text_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        probs = self.router(route_by_text(query, text_embeds, text_mask))
        weights, indices = select_experts(probs, self.top_k, self.renormalize_top_k)
        return self.experts(hidden, weights, indices), probs


def query_and_tokens(
    projected: torch.Tensor, router_query: str, emits_cls: bool, summary_rows: slice | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """H_v^cls (B, C) for Eq 2 and H_v (B, N_out, C), the tokens the experts transform.

    `cls`: the query is the projected CLS (row 0), which stays a token only when `emits_cls`;
    `summary_mean`: the mean of the base's `summary_rows`, every row a token.
    """
    if router_query == "cls":
        return projected[:, 0], projected if emits_cls else projected[:, 1:]
    return projected[:, summary_rows].mean(dim=1), projected


def residual(hidden: torch.Tensor, moe_out: torch.Tensor, settings: object) -> torch.Tensor:
    """Eq 5: `paper` G_v = H_v + alpha MoE(H_v); `official` G_v = MoE(H_v) + alpha H_v."""
    if settings.residual_mode == "paper":
        return hidden + settings.alpha * moe_out
    return moe_out + settings.alpha * hidden


class RemoteParrotMoeProjector(nn.Module):
    """The Parrot projector of an exported folder: a base projector, then the MoE.

    forward(image_features (B, 1+N, D) with the vision CLS in row 0, text_embeds (B, T, C), text_mask
    (B, T)) -> (G_v (B, N_out, C), P (B, E)). The base's submodules are this module's own (keys
    `linear_1.*`/`linear_2.*` for mlp2x_gelu, pargo's for pargo), the MoE's live under `moe.`.
    """

    requires_text_guidance = True

    def __init__(self, spec: dict, base: nn.Module) -> None:
        super().__init__()
        self.settings = SimpleNamespace(**spec["settings"])
        self.router_query = spec["router_query"]
        self.emits_cls = spec["emits_cls"]
        rows = spec.get("summary_rows")
        self.summary_rows = None if rows is None else slice(*rows)
        self._base = (base,)  # not a submodule: its children are registered here under their own names
        for name, child in base.named_children():
            self.add_module(name, child)
        self.moe = ParrotMoeBlock(self.settings)

    def forward(
        self, image_features: torch.Tensor, text_embeds: torch.Tensor | None, text_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        projected = self._base[0](image_features)
        query, hidden = query_and_tokens(projected, self.router_query, self.emits_cls, self.summary_rows)
        moe_out, probs = self.moe(hidden, query, text_embeds, text_mask)
        return residual(hidden, moe_out, self.settings), probs


def build_remote_projector(spec: dict, build_base) -> RemoteParrotMoeProjector:
    """The exported folder's projector for `spec` (config.json `parrot_projector`); `build_base(spec)`
    builds the base projector's module from `spec["base"]`."""
    return RemoteParrotMoeProjector(spec, build_base(spec["base"]))
