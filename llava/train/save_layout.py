"""What a run writes, decided once before training from what actually trains (the parameters with
`requires_grad`), and used by every checkpoint and by the final save alike:

- `PROJECTOR`: only the projector trains: `mm_projector.bin` (upstream LLaVA's file, usable as
  `--pretrain_mm_mlp_adapter`) and `config.json`;
- `PROJECTOR_AND_TOWER`: the vision tower trains too (nothing of the LLM): `mm_projector.bin`,
  `vision_tower.safetensors` (the whole tower) and `config.json`;
- `LORA`: LoRA adapters: the adapter plus every other trained tensor (`non_lora_trainables.safetensors`);
- `FULL`: anything else that trains (the LLM): the whole model.

The partial layouts reload on top of the model they started from: `load_pretrained_model(out,
model_base=<--model_name_or_path>)`. Refused before training, as they cannot be saved exactly: a run
in which nothing trains, and a partial layout with `--mm_use_im_start_end True` (its new token
embeddings belong to the frozen LLM, which a partial layout does not write).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable

from llava.constants import MM_PROJECTOR_FILE, VISION_TOWER_FILE
from llava.train.preflight import LaunchError

logger = logging.getLogger(__name__)

LORA_PARAMETER_MARKER = "lora_"
_PEFT_PREFIX = "base_model.model."  # where peft puts the wrapped model's parameters


class SaveLayout(enum.Enum):
    PROJECTOR = "projector"
    PROJECTOR_AND_TOWER = "projector+vision_tower"
    LORA = "lora"
    FULL = "full"

    @property
    def files(self) -> str:
        return {
            SaveLayout.PROJECTOR: f"{MM_PROJECTOR_FILE}, config.json",
            SaveLayout.PROJECTOR_AND_TOWER: f"{MM_PROJECTOR_FILE}, {VISION_TOWER_FILE}, config.json",
            SaveLayout.LORA: "adapter, non_lora_trainables.safetensors, config.json, tokenizer",
            SaveLayout.FULL: "the whole model, config.json, tokenizer",
        }[self]

    @property
    def is_partial(self) -> bool:
        """Checkpoints of this layout hold some modules, not the whole model's weights."""
        return self in (SaveLayout.PROJECTOR, SaveLayout.PROJECTOR_AND_TOWER)


def layout_for(trainable: Iterable[str]) -> SaveLayout:
    """The layout for these trainable parameter names (a peft model's or a plain one's)."""
    names = [name.removeprefix(_PEFT_PREFIX) for name in trainable]
    if not names:
        raise ValueError("no parameter trains")
    if any(LORA_PARAMETER_MARKER in name for name in names):
        return SaveLayout.LORA
    if all(name.startswith("mm_projector.") for name in names):
        return SaveLayout.PROJECTOR
    if all(name.startswith(("mm_projector.", "vision_tower.")) for name in names):
        return SaveLayout.PROJECTOR_AND_TOWER
    return SaveLayout.FULL


def decide_save_layout(model, model_args, training_args) -> SaveLayout:
    """The run's layout, from `model`'s requires_grad set once freezing and LoRA are applied; logged
    in one line. Raises LaunchError, naming the flags, when the run cannot be saved as it trains."""
    flags = _freezing_flags(model_args, training_args)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise LaunchError(
            f"{flags} leave no parameter to train, so there is nothing to save: drop --freeze_mm_mlp_adapter, "
            "or drop --tune_mm_mlp_adapter / --freeze_backbone so the LLM trains"
        )
    layout = layout_for(trainable)
    if layout is SaveLayout.LORA and not hasattr(model, "peft_config"):
        raise LaunchError(f"{flags}: parameters named '{LORA_PARAMETER_MARKER}*' train outside a peft model; "
                          "they cannot be saved as an adapter (rename them, or enable LoRA with --lora_enable True)")
    if layout.is_partial and getattr(model_args, "mm_use_im_start_end", False):
        raise LaunchError(
            f"--mm_use_im_start_end True with {flags}: the <im_start>/<im_end> embeddings this adds to the frozen "
            f"LLM are not part of the {layout.value} layout ({layout.files}), so the output would reload without "
            "them; pass --mm_use_im_start_end False, or let the LLM train (drop --tune_mm_mlp_adapter / "
            "--freeze_backbone, or --lora_enable True)"
        )
    logger.info(
        "save layout: %s (%s) for every checkpoint and the final save; %d tensors train (%s)",
        layout.value, layout.files, len(trainable), flags,
    )
    return layout


def _freezing_flags(model_args, training_args) -> str:
    """The flags that set what trains, as given (defaults included), for messages."""
    values = {
        "--tune_mm_mlp_adapter": model_args.tune_mm_mlp_adapter,
        "--unfreeze_mm_vision_tower": model_args.unfreeze_mm_vision_tower,
        "--freeze_backbone": model_args.freeze_backbone,
        "--freeze_mm_mlp_adapter": training_args.freeze_mm_mlp_adapter,
        "--lora_enable": training_args.lora_enable,
    }
    return " ".join(f"{flag} {value}" for flag, value in values.items())
