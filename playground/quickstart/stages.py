"""The quickstart's build and training steps: vision tower, easy-VQA data, stage 1 and stage 2.

The LLM is the stage-0 pretrained tiny LLM (`playground.quickstart.pretrain_llm`, committed under
`playground/quickstart/pretrained_llm/`), as LLaVA starts from a pretrained LLM. Training goes
through the project's own entry point (`llava.train.train.train`, the function behind
`python -m llava.train.train`), in this process, with upstream LLaVA's flags; the items are
written in training order first (`playground.quickstart.training_order`). Each stage scores the
held-out probe set every `probe_every` steps into the learning curves
(`playground.quickstart.probes`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoImageProcessor, AutoTokenizer

from llava.constants import MM_PROJECTOR_FILE
from llava.model.export import export_components
from llava.tiny import TinySizes
from llava.tiny.models import write_tiny_clip, write_tiny_siglip
from playground.easyvqa.build import PROBE_FILE, BuildConfig, build
from playground.easyvqa.training import parse_kind_shares, parse_mix
from playground.quickstart.curves import CurveLog
from playground.quickstart.probes import ImageProbe, ProbeCallback
from playground.quickstart.settings import QuickstartSettings, llm_folder
from playground.quickstart.training_order import write_training_order
from playground.quickstart.vision import pretrain_vision_tower

logger = logging.getLogger(__name__)

CHAT_TEMPLATE = "qwen_2"  # stage 2's --version (ChatML, the toy tokenizer's chat template)
TOWER_WRITERS = {"clip": write_tiny_clip, "siglip": write_tiny_siglip}


@dataclass(frozen=True)
class Stage2Variant:
    """One stage-2 run: the projector type and which instruction file it trains on."""

    name: str
    projector: str  # mlp2x_gelu | parrot_moe
    data_file: str  # stage2_instruct.json (mix) | stage2_instruct_en_only.json


QUICKSTART_VARIANT = Stage2Variant("parrot_moe (mix)", "parrot_moe", "stage2_instruct.json")
ABLATION_VARIANTS = (
    Stage2Variant("mlp2x_gelu (English only)", "mlp2x_gelu", "stage2_instruct_en_only.json"),
    Stage2Variant("mlp2x_gelu (mix)", "mlp2x_gelu", "stage2_instruct.json"),
    QUICKSTART_VARIANT,
)


@dataclass(frozen=True)
class Stage1Output:
    """What stage 2 starts from: its `--model_name_or_path`, `--vision_tower`, `--pretrain_mm_mlp_adapter`."""

    llm: Path
    vision_tower: Path
    projector: Path


def build_tower(settings: QuickstartSettings, work: Path) -> Path:
    """The vision tower both stages use: a tiny random-init tower (`llava.tiny`), pretrained unless 0 steps."""
    if settings.vision not in TOWER_WRITERS:
        raise ValueError(f"--vision {settings.vision!r}: choose one of {', '.join(TOWER_WRITERS)}")
    sizes = TinySizes(
        vision_hidden_size=settings.vision_hidden_size,
        vision_layers=settings.vision_layers,
        image_size=settings.image_size,
        patch_size=settings.patch_size,
    )
    random_init = work / f"{settings.vision}_random_init"
    TOWER_WRITERS[settings.vision](random_init, sizes, settings.seed)
    if settings.tower_pretrain_steps <= 0:
        return random_init
    pretrain_vision_tower(
        random_init, work / "tower", settings.tower_pretrain_steps, lr=settings.tower_pretrain_lr,
        seed=settings.seed, max_images=settings.tower_pretrain_images,
    )
    return work / "tower"


def build_data(settings: QuickstartSettings, out_dir: Path, stage2_mixes: dict | None = None) -> dict:
    """The six-language easy-VQA data (with the probe set) under `out_dir`; returns its manifest.

    `stage2_mixes` (name -> language mix) adds one `stage2_instruct_<name>.json` per mix: the same
    stage-2 items, in that mix's languages."""
    config = BuildConfig(
        out=out_dir,
        seed=settings.seed,
        mix=parse_mix(settings.mix),
        num_stage1=settings.num_stage1,
        num_stage2=settings.num_stage2,
        num_test_images=settings.num_test_images,
        mcq_fraction=settings.mcq_fraction,
        kind_shares=parse_kind_shares(settings.kind_shares),
        probe_per_skill=settings.probe_per_skill,
        stage2_mixes=dict(stage2_mixes or {}),
    )
    return build(config)


def common_flags(settings: QuickstartSettings, output_dir: Path, num_items: int, batch_size: int) -> list[str]:
    """Trainer flags shared by both stages (CPU, float32, one pass over an ordered file)."""
    steps = max(1, math.ceil(num_items / batch_size))
    return [
        "--output_dir", str(output_dir),
        "--overwrite_output_dir", "True",  # a rerun of the quickstart replaces its own stages
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", str(batch_size),
        "--gradient_accumulation_steps", "1",
        "--train_sampling_strategy", "sequential",
        "--lr_scheduler_type", "cosine",
        "--warmup_ratio", str(settings.warmup_ratio),
        "--weight_decay", "0.0",
        "--logging_steps", str(max(1, steps // 20)),
        "--save_strategy", "no",
        "--report_to", "none",
        "--seed", str(settings.seed),
        "--dataloader_num_workers", str(settings.dataloader_num_workers),
        "--model_max_length", "512",
        "--mm_use_im_start_end", "False",
        "--mm_use_im_patch_token", "False",
        "--mm_vision_select_layer", "-1",
        "--mm_vision_select_feature", settings.mm_vision_select_feature,
        "--image_aspect_ratio", "square",
        "--lazy_preprocess", "True",
        "--disable_tqdm", "False",
    ]


def stage1_argv(
    settings: QuickstartSettings, tower: Path, data_dir: Path, ordered: Path, num_items: int, out: Path
) -> list[str]:
    """Stage 1: `plain` captions into `out`; the `mlp2x_gelu` projector trains (and the LLM with `stage1_tune_llm`).

    With `stage1_tune_llm` off this is upstream's stage 1 (`--tune_mm_mlp_adapter`, writes
    `out/mm_projector.bin`); on, it trains projector + LLM and writes a full checkpoint.
    """
    return [
        "--model_name_or_path", str(llm_folder(settings)),
        "--vision_tower", str(tower),
        "--version", "plain",
        "--data_path", str(ordered),
        "--image_folder", str(data_dir / "images"),
        "--mm_projector_type", "mlp2x_gelu",
        "--tune_mm_mlp_adapter", str(not settings.stage1_tune_llm),
        "--learning_rate", str(settings.stage1_lr),
        *common_flags(settings, out, num_items, settings.stage1_batch_size),
    ]


def stage2_argv(
    settings: QuickstartSettings,
    start: Stage1Output,
    data_dir: Path,
    ordered: Path,
    num_items: int,
    projector: str,
    out: Path,
) -> list[str]:
    """Stage 2: ChatML instructions; projector, LLM and (optionally) the vision tower train."""
    argv = [
        "--model_name_or_path", str(start.llm),
        "--vision_tower", str(start.vision_tower),
        "--version", CHAT_TEMPLATE,
        "--data_path", str(ordered),
        "--image_folder", str(data_dir / "images"),
        "--pretrain_mm_mlp_adapter", str(start.projector),
        "--mm_projector_type", projector,
        "--learning_rate", str(settings.stage2_lr),
        *common_flags(settings, out, num_items, settings.stage2_batch_size),
    ]
    if projector == "parrot_moe":
        argv += ["--moe_guidance_norm", settings.moe_guidance_norm,
                 "--moe_router_temperature", str(settings.moe_router_temperature)]
    if settings.unfreeze_vision_tower:
        argv += ["--unfreeze_mm_vision_tower", "True", "--mm_vision_tower_lr", str(settings.vision_tower_lr)]
    return argv


def run_training(argv: list[str], callbacks: list) -> list[dict]:
    """Train with `llava.train.train`; return the trainer's log history (losses, routing per language)."""
    from llava.train.train import train

    logger.info("python -m llava.train.train %s", " ".join(argv))
    trainer = train(argv, callbacks=callbacks)
    history = list(trainer.state.log_history)
    del trainer
    return history


def probe_callbacks(
    settings: QuickstartSettings, data_dir: Path, tokenizer, tower: Path, stage: str, curves: CurveLog
) -> list[ProbeCallback]:
    """The learning-curve callback of one stage (none when `probe_every` is 0 or the data has no probe set)."""
    if settings.probe_every <= 0 or not (data_dir / PROBE_FILE).is_file():
        return []
    probe = ImageProbe(
        data_dir / PROBE_FILE, data_dir / "images", tokenizer, AutoImageProcessor.from_pretrained(tower), CHAT_TEMPLATE
    )
    return [ProbeCallback(probe, stage, settings.probe_every, curves)]


def run_stage1(settings: QuickstartSettings, tower: Path, data_dir: Path, work: Path, curves: CurveLog) -> Stage1Output:
    """Stage 1 into `work/stage1`; returns what stage 2 starts from."""
    out = work / "stage1"
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(llm_folder(settings))
    ordered = work / "stage1_ordered.json"
    captions = "stage1_captions_en_only.json" if settings.stage1_english_only else "stage1_captions.json"
    count = write_training_order(
        data_dir / captions, ordered, tokenizer, settings.stage1_batch_size, settings.stage1_epochs,
        settings.seed,
    )
    callbacks = probe_callbacks(settings, data_dir, tokenizer, tower, "stage 1", curves)
    run_training(stage1_argv(settings, tower, data_dir, ordered, count, out), callbacks)
    if not settings.stage1_tune_llm:
        return Stage1Output(llm_folder(settings), tower, out / MM_PROJECTOR_FILE)
    parts = export_components(out, work / "stage1_split")
    return Stage1Output(parts["llm"], parts["vision_tower"], parts["projector"])


def run_stage2(
    settings: QuickstartSettings,
    data_dir: Path,
    work: Path,
    start: Stage1Output,
    variant: Stage2Variant,
    out: Path,
    curves: CurveLog,
) -> list[dict]:
    """Stage 2 of `variant` into `out` (a full checkpoint); returns the log history."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(start.llm)
    ordered = work / f"ordered_{variant.data_file}"
    count = write_training_order(
        data_dir / variant.data_file, ordered, tokenizer, settings.stage2_batch_size, settings.stage2_epochs,
        settings.seed, settings.max_turns,
    )
    callbacks = probe_callbacks(settings, data_dir, tokenizer, start.vision_tower, f"stage 2: {variant.name}", curves)
    argv = stage2_argv(settings, start, data_dir, ordered, count, variant.projector, out)
    return run_training(argv, callbacks)
