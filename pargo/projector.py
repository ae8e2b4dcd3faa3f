"""The ParGo projector (Wang et al., AAAI 2025): partial and global learned queries read the patches
through a Q-Former, and a Linear maps them to the LLM width. P + G tokens per image instead of N."""

from __future__ import annotations

import torch

from llava.model.multimodal_projector import Projector, ProjectorOutput
from pargo.config import PargoSettings
from pargo.qformer import PargoQformer


class PargoProjector(PargoQformer, Projector):
    """`--mm_projector_type pargo`: (num_images, N, D) patches -> (num_images, P + G, C) visual tokens.

    - The patches are layer-normed (BLIP-2's `ln_vision`); the vision CLS is never read: the core drops
      it under `mm_vision_select_feature patch`, and this projector drops row 0 under `cls_patch`.
    - P partial + G global learned queries (with learned positions) run through `--pargo_layers`
      `QformerLayer`s; the masks (`pargo.masks`) are the same in every layer: partial query i
      cross-attends only to window i of the patch grid, global queries to all patches, and
      self-attention is block-diagonal (partial <-> partial, global <-> global).
    - A final Linear maps the Q-Former width to the LLM width C. Output rows: partial first, then global.

    `summary_tokens` are the G global rows: a projector stacked on this one (parrot_moe) routes on them.
    Every parameter lives in a child module (`vision_norm`, `queries`, `layers`, `out_proj`), so the
    module's forward hooks under ZeRO-3 gather exactly what each step reads. The modules and their
    forward are `pargo.qformer.PargoQformer`'s, the code exported folders run too.
    """

    def __init__(self, settings: PargoSettings) -> None:
        super().__init__(settings)  # PargoQformer builds the modules; Projector (next in the MRO) the rest

    def num_output_tokens(self, num_patches: int) -> int:
        self.layout(num_patches)  # a grid the partial queries cannot tile fails here, before training starts
        return self.settings.num_queries

    def summary_tokens(self, num_patches: int) -> slice | None:
        s = self.settings
        return slice(s.num_partial, s.num_queries) if s.num_global else None

    def forward(
        self,
        image_features: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> ProjectorOutput:
        return ProjectorOutput(self.qformer_tokens(image_features))

    def extra_repr(self) -> str:
        s = self.settings
        window = "derived" if s.window is None else f"{s.window[0]}x{s.window[1]}"
        return f"partial={s.num_partial}, global={s.num_global}, window={window}, heads={s.heads}"
