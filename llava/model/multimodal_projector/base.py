"""The projector contract: what the core asks of every projector, as a base class with no-op defaults.

A projector maps vision features to the visual tokens the LLM reads. The core (model, trainer,
dataset, serving) talks to it only through this class:

- `forward(image_features, text_embeds=None, text_mask=None) -> ProjectorOutput`
  image_features (num_images, M, D): the vision tower's patches, with the CLS as row 0 when
  `wants_cls_token` is True or `mm_vision_select_feature` is `cls_patch` (for towers without a CLS,
  such as SigLIP, row 0 is the mean of the patches). text_embeds (num_images, T, C) / text_mask
  (num_images, T) are passed only to projectors with `requires_text_guidance`: the LLM word
  embeddings of the prompt tokens of the sample each image belongs to (answers, padding and image
  sentinels excluded; at inference the whole prompt).
- `num_output_tokens(num_patches)`: how many LLM positions one image takes. Everything that counts
  visual tokens (length budgets, truncation, context checks) asks this, never the patch grid.
- `set_training_stage(stage, config)`: called once the trainer has set what trains (1 = alignment,
  2 = instruction tuning), so a projector can freeze or bypass parts of itself.
- `summary_tokens(num_patches)`: the output rows that summarise the whole image (a CLS row, global
  queries), for a projector stacked on top of this one that needs an image-level query.
- `map_pretrained_keys(state)`: lets a stage-1 projector file of another layout load into this one.

The result is returned, never left on the module: `ProjectorOutput` carries the visual tokens, an
optional auxiliary loss (already scaled; the model adds it to the LM loss) and optional per-image
metrics (each a tensor whose first dimension is the image), e.g. `ROUTING_METRIC`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
from transformers.utils import ModelOutput

# Per-image expert probabilities (num_images, E) of a projector that routes (a Mixture-of-Experts).
# Trainer callbacks log it per language; servers show it per request.
ROUTING_METRIC = "routing"


@dataclass
class ProjectorOutput(ModelOutput):
    """What one projector call computed.

    visual_tokens (num_images, N_out, C); aux_loss a scalar or None; metrics maps a name to a
    detached tensor (num_images, ...), one row per image in the order images were given ({} if none).
    A `ModelOutput` (a dict underneath), so DeepSpeed ZeRO-3 reaches the tensors inside to hook the
    backward pass of the projector's own parameters.
    """

    visual_tokens: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = {}
        super().__post_init__()


class Projector(nn.Module):
    """Base class of every projector (built-in and plugin). Subclasses implement `forward`.

    `emits_cls`: whether the CLS row of the input is also a visual token (upstream LLaVA's
    `mm_vision_select_feature cls_patch`); the default `num_output_tokens` counts it.
    """

    requires_text_guidance: ClassVar[bool] = False
    # Instances may override this (a projector stacked on another follows its base's choice).
    wants_cls_token: bool = False
    # Names of the per-image metrics this projector reports (keys of `ProjectorOutput.metrics`).
    reported_metrics: tuple[str, ...] = ()

    def __init__(self, *, emits_cls: bool = False) -> None:
        super().__init__()
        self.emits_cls = emits_cls

    def num_output_tokens(self, num_patches: int) -> int:
        """LLM positions per image for a tower with `num_patches` patches."""
        return num_patches + int(self.emits_cls)

    def summary_tokens(self, num_patches: int) -> slice | None:
        """Output rows that summarise the image (the projected CLS under `cls_patch`), or None."""
        return slice(0, 1) if self.emits_cls else None

    def set_training_stage(self, stage: int, config: object) -> None:
        """Stage control hook (1 = alignment, 2 = instruction tuning); the default changes nothing."""

    def map_pretrained_keys(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keys of a stage-1 projector file (relative to the projector) -> this projector's keys."""
        return state

    def forward(
        self,
        image_features: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> ProjectorOutput:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(image_features, ...)")


def select_features_for(projector: Projector, features: torch.Tensor, select_feature: str) -> torch.Tensor:
    """The tower's (num_images, 1 + N, D) output as the projector expects it: the CLS row is kept
    under `cls_patch` or when the projector wants it, else dropped."""
    if select_feature == "patch" and not projector.wants_cls_token:
        return features[:, 1:]
    return features
