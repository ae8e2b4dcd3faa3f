"""What the quickstart builds and how long it trains: one dataclass, two presets, CLI overrides.

`DEFAULT` is the README's main job (sized to finish in about 15 minutes on 2 CPU cores, install
included); `FAST` is a miniature of the whole pipeline for tests and smoke runs (well under a
minute of training). Every field is also a `--flag` of `python -m playground.quickstart`
(`stage2_lr` -> `--stage2-lr`), so one run can change any of them without editing code.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class QuickstartSettings:
    """Sizes of the tiny models, of the data, and the training and evaluation schedule."""

    seed: int = 0
    # Tiny models (`python -m llava.tiny build`): the LLM backbone and the vision tower.
    llm: str = "llama"  # llama (SmolLM2 tokenizer, 49k vocab) or qwen2 (Qwen2 tokenizer, 151k vocab)
    vision: str = "clip"  # clip or siglip
    hidden_size: int = 128
    layers: int = 4  # 4 vs 2 layers at half the stage-2 data: English 32.7 % vs 29.0 % at full data, ~10 % slower steps
    heads: int = 4
    vision_hidden_size: int = 64
    vision_layers: int = 2
    image_size: int = 64
    patch_size: int = 8  # 16 px patches left shapes near chance even for a tower trained alone
    # Tower pretraining (`playground.quickstart_vision`), standing in for CLIP's; 0 steps skips it.
    tower_pretrain_steps: int = 800
    tower_pretrain_lr: float = 1e-3
    tower_pretrain_images: int = 0  # easy-VQA train images it reads; 0 = all
    mm_vision_select_feature: str = "cls_patch"
    # Data (`python -m playground.easyvqa build`).
    num_stage1: int = 8000
    num_stage2: int = 64000
    num_test_images: int = 300
    mcq_fraction: float = 0.3
    # Stage 1: alignment on captions. The tiny LLM is random-init, and a frozen random LLM cannot
    # learn captions (measured: the loss stays at ~10.2 = chance), so by default it trains too;
    # stage 2 then starts from stage 1's LLM and projector (`llava.model.export`).
    stage1_tune_llm: bool = True
    stage1_epochs: float = 1.0
    stage1_batch_size: int = 32
    stage1_lr: float = 1e-3
    # Stage 2: instruction tuning (projector + MoE + LLM; the tower only with unfreeze_vision_tower).
    max_turns: int = 4  # stage-2 items about one image in one language merged into one conversation
    stage2_epochs: float = 1.0
    stage2_batch_size: int = 32
    stage2_lr: float = 2e-3
    vision_tower_lr: float = 1e-3
    unfreeze_vision_tower: bool = False  # the pretrained tower stays frozen, as LLaVA keeps CLIP
    warmup_ratio: float = 0.03
    dataloader_num_workers: int = 0
    # Evaluation.
    eval_batch_size: int = 64
    max_new_tokens: int = 8
    freeform_probes: int = 60  # free-form questions asked per language

    @classmethod
    def field_names(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls)]


DEFAULT = QuickstartSettings()

FAST = QuickstartSettings(
    hidden_size=32,
    layers=1,
    heads=2,
    vision_hidden_size=32,
    vision_layers=1,
    image_size=32,
    patch_size=16,
    tower_pretrain_steps=5,
    tower_pretrain_images=64,
    num_stage1=48,
    num_stage2=96,
    num_test_images=12,
    stage1_batch_size=16,
    stage2_batch_size=16,
    eval_batch_size=32,
    max_new_tokens=4,
    freeform_probes=6,
)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per settings field; unset flags keep the preset's value."""
    group = parser.add_argument_group("sizes and schedule (defaults: the chosen preset)")
    for field in dataclasses.fields(QuickstartSettings):
        kind = _parse_bool if field.type in ("bool", bool) else {"int": int, "float": float}.get(field.type, str)
        group.add_argument(
            _flag(field.name), dest=field.name, type=kind, default=None, help=f"default {field.default!r}"
        )


def settings_from_args(args: argparse.Namespace, preset: QuickstartSettings) -> QuickstartSettings:
    """`preset` with every field the command line set replaced."""
    overrides = {name: getattr(args, name) for name in QuickstartSettings.field_names()}
    return dataclasses.replace(preset, **{name: value for name, value in overrides.items() if value is not None})
