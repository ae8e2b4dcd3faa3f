"""The Parrot projector: a base projector (LLaVA's mlp2x_gelu by default) followed by the text-guided
multilingual MoE (Eq 2-5), whose math lives in `parrot_moe.moe_block` (shared with exported folders)."""

from __future__ import annotations

import torch

from llava.model.multimodal_projector import ROUTING_METRIC, Projector, ProjectorOutput
from parrot_moe.base_projector import router_query_of
from parrot_moe.config import ParrotMoeSettings
from parrot_moe.moe_block import ParrotMoeBlock, query_and_tokens, residual
from parrot_moe.router import load_balancing_loss


class ParrotMoeProjector(Projector):
    """`--mm_projector_type parrot_moe`: H_v = base(Z_v), then G_v from Eq 2-5.

    Call contract (see `llava.model.multimodal_projector.Projector`):

        out = proj(image_features, text_embeds=T, text_mask=M)   # a ProjectorOutput

    - image_features (B, 1+N, D): row 0 is always the vision CLS (`wants_cls_token = True`), rows
      1..N the patches. B counts images; each image carries its own sample's text.
    - text_embeds (B, T, C): LLM word embeddings of the prompt (non-answer, non-padding tokens).
    - text_mask (B, T) bool: True on the guidance tokens. Padding the text with False positions
      changes nothing. `text_embeds=None` or an all-False row means "no guidance": H'_v = 0, so the
      bias-free router gives uniform routing P = 1/E for that sample.
    - returns `visual_tokens` G_v (B, N_out, C), `metrics["routing"]` P (B, E) detached (plus the
      base's own metrics), and `aux_loss`: moe_aux_loss_coef * the Switch load-balancing loss (see
      `parrot_moe.router.load_balancing_loss`), or None when the coefficient is 0 (plus the base's).

    The base (`--moe_base_projector`, see `parrot_moe.base_projector`) decides the routing query and
    N_out. `router_query = cls` (mlp2x_gelu): H_v^cls = the projected CLS; N_out = N under
    `mm_vision_select_feature patch` (the CLS only routes) and 1+N under `cls_patch` (the projected
    CLS is a visual token too, as in the authors' code; the experts then also transform it).
    `router_query = summary_mean` (pargo): H_v^cls = the mean of the base's summary rows (pargo's
    global queries); N_out = the base's count (pargo: P+G).

    Equations (C = hidden_size, E = moe_num_experts, k = moe_top_k):
      H_v = base(Z_v); H_v^cls as above
      Eq 2  H'_v = softmax(H_v^cls H_t^T / sqrt(C)) H_t           (no learned weights)
      Eq 3  P = softmax(Linear_{C->E}(H'_v))                       (one vector per sample)
      Eq 4  MoE(H_v) = sum_{i in top-k(P)} P[i] E_i(H_v)           (P renormalised over the top-k
                                                                  with moe_renormalize_top_k)
      Eq 5  paper:    G_v = H_v + alpha MoE(H_v)   (moe_alpha default 1.0)
            official: G_v = MoE(H_v) + alpha H_v   (moe_alpha default 0.1)

    Stage state: `moe_bypass` (set by `set_training_stage` for stage 1): G_v = H_v, the MoE does not
    run, and the output has no routing and no MoE aux loss (only what the base returns). Nothing about
    a call is kept on the module.

    Parameters: the base's submodules are registered here under their own names, so the keys are the
    base projector's own (`0.weight`, `0.bias`, `2.weight`, `2.bias` for mlp2x_gelu, exactly as
    upstream LLaVA's `mm_projector`; pargo's for pargo) and a stage-1 `mm_projector.bin` of the base
    loads unchanged; the MoE's live under `moe.`. The base module itself is held outside the module
    tree (it owns no parameter directly, see `build_base_projector`) and only runs its forward.
    """

    requires_text_guidance = True
    wants_cls_token = True
    reported_metrics = (ROUTING_METRIC,)

    def __init__(self, settings: ParrotMoeSettings, base: Projector) -> None:
        router_query = router_query_of(base)
        super().__init__(emits_cls=settings.emit_cls and router_query == "cls")
        self.router_query = router_query
        self.settings = settings
        self._base = (base,)  # a tuple: not registered as a submodule, so its keys carry no prefix
        for name, child in base.named_children():
            self.add_module(name, child)
        self.moe = ParrotMoeBlock(settings)
        self.moe_bypass = False
        self.reported_metrics = tuple(dict.fromkeys((*base.reported_metrics, ROUTING_METRIC)))

    @property
    def base(self) -> Projector:
        return self._base[0]

    def train(self, mode: bool = True) -> ParrotMoeProjector:
        super().train(mode)
        self.base.training = mode  # its children follow through this module; the base object itself too
        return self

    def num_output_tokens(self, num_patches: int) -> int:
        base_tokens = self.base.num_output_tokens(num_patches)
        if self.router_query == "cls":
            return base_tokens - (0 if self.emits_cls else 1)
        self._summary_rows(num_patches)
        return base_tokens

    def set_training_stage(self, stage: int, config: object) -> None:
        """Stage control, called by the trainer after it sets what trains.

        Stage 1 (projector alignment): the MoE is bypassed (G_v = H_v) and frozen. Stage 2: it trains.
        `config.freeze_moe` overrides: True freezes it (still applied in stage 2), False trains it
        (and stops the bypass) in stage 1 as well. The base projector's own hook runs first.
        """
        self.base.set_training_stage(stage, config)
        freeze = getattr(config, "freeze_moe", None)
        freeze = stage == 1 if freeze is None else bool(freeze)
        self.moe_bypass = stage == 1 and freeze
        self.moe.requires_grad_(not freeze)

    def map_pretrained_keys(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The base maps its own keys (a stage-1 file of the base or of parrot_moe); `moe.` keys stay."""
        moe = {k: v for k, v in state.items() if k.startswith("moe.")}
        return {**self.base.map_pretrained_keys({k: v for k, v in state.items() if k not in moe}), **moe}

    def project(self, image_features: torch.Tensor) -> torch.Tensor:
        """Base projector H_v = base(Z_v): (B, 1+N, D) -> (B, M, C), M = the base's token count
        (mlp2x_gelu: 1+N, the projected CLS first)."""
        return self.base(image_features).visual_tokens

    def _summary_rows(self, num_patches: int) -> slice:
        rows = self.base.summary_tokens(num_patches)
        if rows is None:
            raise ValueError(
                f"--moe_base_projector {self.settings.base_projector} has neither a CLS row nor summary tokens "
                "for the router's query (Eq 2); use a base with either (pargo needs --pargo_num_global_queries > 0)"
            )
        return rows

    def _query_and_tokens(self, projected: torch.Tensor, num_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
        """H_v^cls (B, C) for Eq 2 and H_v (B, N_out, C), the tokens the experts transform."""
        rows = None if self.router_query == "cls" else self._summary_rows(num_patches)
        return query_and_tokens(projected, self.router_query, self.emits_cls, rows)

    def forward(
        self,
        image_features: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> ProjectorOutput:
        self._check_inputs(image_features, text_embeds, text_mask)
        base_out = self.base(image_features)
        query, hidden = self._query_and_tokens(base_out.visual_tokens, image_features.shape[1] - 1)
        if self.moe_bypass:
            return ProjectorOutput(hidden, base_out.aux_loss, base_out.metrics)
        moe_out, probs = self.moe(hidden, query, text_embeds, text_mask)
        visual_tokens = residual(hidden, moe_out, self.settings)
        metrics = {**base_out.metrics, ROUTING_METRIC: probs.detach()}
        return ProjectorOutput(visual_tokens, self._aux_loss(base_out.aux_loss, probs), metrics)

    def _aux_loss(self, base_loss: torch.Tensor | None, probs: torch.Tensor) -> torch.Tensor | None:
        """The base's aux loss (if any) plus moe_aux_loss_coef * the load-balancing loss (if > 0)."""
        coef = self.settings.aux_loss_coef
        losses = [loss for loss in (base_loss, coef * load_balancing_loss(probs) if coef > 0 else None) if loss is not None]
        return sum(losses) if losses else None

    def _check_inputs(
        self, image_features: torch.Tensor, text_embeds: torch.Tensor | None, text_mask: torch.Tensor | None
    ) -> None:
        if image_features.dim() != 3 or image_features.shape[1] < 2:
            raise ValueError(
                f"parrot_moe expects image_features (B, 1+N, D) with the vision CLS in row 0, got "
                f"{tuple(image_features.shape)}; the vision tower must honour `wants_cls_token`"
            )
        if text_embeds is None:
            return
        if (
            text_embeds.shape[0] != image_features.shape[0]
            or text_embeds.shape[-1] != self.settings.hidden_size
        ):
            raise ValueError(
                f"parrot_moe expects text_embeds (B, T, C={self.settings.hidden_size}) with one row per image, "
                f"got {tuple(text_embeds.shape)} for {image_features.shape[0]} images"
            )
        if text_mask is not None and text_mask.shape != text_embeds.shape[:2]:
            raise ValueError(
                f"parrot_moe expects text_mask (B, T) = {tuple(text_embeds.shape[:2])}, got {tuple(text_mask.shape)}"
            )

    def extra_repr(self) -> str:
        s = self.settings
        return (
            f"base={s.base_projector}, router_query={self.router_query}, emit_cls={self.emits_cls}, "
            f"top_k={s.top_k}, renormalize_top_k={s.renormalize_top_k}, residual_mode={s.residual_mode}, alpha={s.alpha}, aux_loss_coef={s.aux_loss_coef}"
        )
