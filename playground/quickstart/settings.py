"""What the quickstart builds and how long it trains: settings dataclasses, presets, CLI overrides.

`QuickstartSettings`: `DEFAULT` is the README's main job (sized to finish within 15 minutes on 2
CPU cores, install included); `FAST` is a miniature of the whole pipeline for tests and smoke runs.
`PretrainSettings` is stage 0, run ahead of time (`python -m playground.quickstart.pretrain_llm`).
Every field is also a `--flag` of its command (`stage2_lr` -> `--stage2-lr`), so one run can
change any of them without editing code.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

PRETRAINED_LLM = Path(__file__).with_name("pretrained_llm")


@dataclass(frozen=True)
class QuickstartSettings:
    """Sizes of the tiny vision tower and of the data, the training schedule and the evaluation."""

    seed: int = 0
    # The LLM: a stage-0 pretrained tiny LLM folder (`python -m playground.quickstart.pretrain_llm`);
    # empty = the one committed under playground/quickstart/pretrained_llm/.
    llm: str = ""
    # The vision tower (`python -m llava.tiny build`).
    vision: str = "clip"  # clip or siglip
    vision_hidden_size: int = 64
    vision_layers: int = 2
    image_size: int = 64
    patch_size: int = 8  # 16 px patches left shapes near chance even for a tower trained alone
    # Tower pretraining (`playground.quickstart.vision`), standing in for CLIP's; 0 steps skips it.
    tower_pretrain_steps: int = 800
    tower_pretrain_lr: float = 1e-3
    tower_pretrain_images: int = 0  # easy-VQA train images it reads; 0 = all
    mm_vision_select_feature: str = "cls_patch"
    # Data (`python -m playground.easyvqa build`).
    mix: str = "en=0.8,zh=0.04,pt=0.04,ar=0.04,tr=0.04,ru=0.04"  # language shares of both stages (paper-like)
    kind_shares: str = "color=1,shape=1,yes_no=1"  # stage-2 question kinds
    num_stage1: int = 8000
    num_stage2: int = 64000
    num_test_images: int = 300
    mcq_fraction: float = 0.3
    # Stage 1: alignment on captions (the mlp2x_gelu projector; the LLM too with stage1_tune_llm).
    stage1_tune_llm: bool = False
    stage1_english_only: bool = False  # stage 1 on English captions only (the paper's stage-1 data is English)
    stage1_epochs: float = 1.0
    stage1_batch_size: int = 32
    stage1_lr: float = 1e-3
    # Stage 2: instruction tuning (projector + MoE + LLM; the tower only with unfreeze_vision_tower).
    max_turns: int = 4  # stage-2 items about one image in one language merged into one conversation
    stage2_epochs: float = 2.0  # two passes: yes/no pairs 6-47 % after one, 22-49 % after two (README status)
    stage2_batch_size: int = 32
    stage2_lr: float = 2e-3
    vision_tower_lr: float = 1e-3
    unfreeze_vision_tower: bool = False  # the pretrained tower stays frozen, as LLaVA keeps CLIP
    warmup_ratio: float = 0.03
    # The parrot_moe router (`--moe_guidance_norm`, `--moe_router_temperature`; paper defaults).
    moe_guidance_norm: str = "none"
    moe_router_temperature: float = 1.0
    dataloader_num_workers: int = 0
    # Learning curves: held-out probe items per skill and language, scored every probe_every steps.
    probe_per_skill: int = 8
    probe_every: int = 50
    # Evaluation.
    eval_batch_size: int = 64
    max_new_tokens: int = 8
    freeform_probes: int = 60  # free-form questions asked per language


def llm_folder(settings: QuickstartSettings) -> Path:
    """The LLM the quickstart starts from (`--llm`, else the committed stage-0 result)."""
    folder = Path(settings.llm) if settings.llm else PRETRAINED_LLM
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"--llm {folder} holds no config.json; pretrain one with "
            f"`python -m playground.quickstart.pretrain_llm --out {folder}` or leave --llm empty"
        )
    return folder


DEFAULT = QuickstartSettings()

FAST = QuickstartSettings(
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
    probe_per_skill=1,
    probe_every=2,
    eval_batch_size=32,
    max_new_tokens=4,
    freeform_probes=6,
)


@dataclass(frozen=True)
class PretrainSettings:
    """Stage 0: text pretraining of the tiny LLM (`python -m playground.quickstart.pretrain_llm`).

    The curriculum starts with two options and one question per document, and reaches
    `max_options` and `max_turns` after `curriculum_fraction` of the steps.
    """

    seed: int = 0
    init_from: str = ""  # continue an earlier run from its folder (tokenizer, sizes, weights, curves); "" = from scratch
    # Toy tokenizer: byte-level BPE on `tokenizer_documents` stage-0 documents.
    vocab_size: int = 2048
    tokenizer_documents: int = 20000
    # The tiny LLaMA.
    hidden_size: int = 128
    intermediate_size: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 4
    # Schedule (AdamW, linear warm-up, cosine to 10 %).
    steps: int = 5000
    step_tokens: int = 4096  # documents drawn per optimizer step, counted in tokens
    microbatch_tokens: int = 1024  # documents of similar length padded together, at most this many tokens
    lr: float = 3e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    answer_loss_weight: float = 5.0  # loss weight of answer tokens; every other token weighs 1
    # Corpus and curriculum (`playground.quickstart.corpus.CorpusShape`).
    max_options: int = 5
    max_turns: int = 4
    curriculum_fraction: float = 0.3
    negation_from: float = 0.4  # share of the steps before any yes/no question is negated
    negation_full: float = 0.7  # share of the steps by which half of them are (as in the test)
    caption_share: float = 0.2
    drill_share: float = 0.3  # of documents: yes/no drills (corpus.SceneTextWriter.drill_document)
    yes_no_chat_share: float = 0.0  # of documents: chats that ask only yes/no questions (2..8 turns)
    drill_chat_share: float = 0.0  # of drills: laid out as chats, one turn per comparison
    mcq_share: float = 0.8
    word_reply_share: float = 0.3
    benchmark_layout_share: float = 0.5
    same_language_scene_share: float = 0.5
    # Learning curves: held-out documents per skill and language, scored every `probe_every` steps.
    probe_every: int = 250
    probe_per_skill: int = 16

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_settings_arguments(parser: argparse.ArgumentParser, settings_class: type = QuickstartSettings) -> None:
    """One `--flag` per field of the settings dataclass; unset flags keep the preset's value."""
    group = parser.add_argument_group("sizes and schedule (defaults: the chosen preset)")
    for field in dataclasses.fields(settings_class):
        kind = _parse_bool if field.type in ("bool", bool) else {"int": int, "float": float}.get(field.type, str)
        group.add_argument(
            _flag(field.name), dest=field.name, type=kind, default=None, help=f"default {field.default!r}"
        )


def settings_from_args(args: argparse.Namespace, preset):
    """`preset` (a settings dataclass) with every field the command line set replaced."""
    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(preset)}
    return dataclasses.replace(preset, **{name: value for name, value in overrides.items() if value is not None})
