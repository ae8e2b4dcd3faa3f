"""The quickstart's build and training steps: tiny assets, easy-VQA data, stage 1 and stage 2.

Training goes through the project's own entry point (`llava.train.train.train`, the function behind
`python -m llava.train.train`), in this process, with upstream LLaVA's flags. Two things are done
here, to the training files, rather than by the trainer:

- Multi-turn conversations. Items about the same image in the same language are merged into one
  LLaVA conversation of up to `max_turns` question/answer turns (the layout of LLaVA's own
  instruction data). The image and the chat preamble are then encoded once for several answers,
  which on a CPU makes a sample several times cheaper per supervised answer.
- Order. Items are written in length-homogeneous batches (LLaVA's "megabatch" idea), so a batch
  carries little padding, and trained with `--train_sampling_strategy sequential`; epochs are
  written as reshuffled copies, so every epoch sees a new order.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer

from llava.constants import MM_PROJECTOR_FILE
from llava.model.export import export_components
from llava.tiny import build_tiny_assets
from playground.easyvqa.build import BuildConfig, build
from playground.quickstart.settings import QuickstartSettings
from playground.quickstart.vision import pretrain_vision_tower

logger = logging.getLogger(__name__)

IMAGE_MARKER = "<image>"
MEGABATCH_FACTOR = 16  # batches per megabatch: items are sorted by length inside one megabatch


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


def build_assets(settings: QuickstartSettings, out_dir: Path) -> dict[str, Path]:
    """Tiny LLM and vision-tower folders under `out_dir` (kept when already built with these sizes)."""
    return build_tiny_assets(
        out_dir,
        seed=settings.seed,
        hidden_size=settings.hidden_size,
        layers=settings.layers,
        heads=settings.heads,
        vision_hidden_size=settings.vision_hidden_size,
        vision_layers=settings.vision_layers,
        image_size=settings.image_size,
        patch_size=settings.patch_size,
    )


def build_tower(settings: QuickstartSettings, assets: dict[str, Path], out: Path) -> Path:
    """The vision tower both stages use: `assets[vision]` pretrained into `out`, or as built if 0 steps."""
    if settings.tower_pretrain_steps <= 0:
        return assets[settings.vision]
    pretrain_vision_tower(
        assets[settings.vision], out, settings.tower_pretrain_steps, lr=settings.tower_pretrain_lr,
        seed=settings.seed, max_images=settings.tower_pretrain_images,
    )
    return out


def build_data(settings: QuickstartSettings, out_dir: Path) -> dict:
    """The six-language easy-VQA data under `out_dir`; returns its manifest."""
    config = BuildConfig(
        out=out_dir,
        seed=settings.seed,
        num_stage1=settings.num_stage1,
        num_stage2=settings.num_stage2,
        num_test_images=settings.num_test_images,
        mcq_fraction=settings.mcq_fraction,
    )
    return build(config)


def merge_turns(items: list[dict], max_turns: int) -> list[dict]:
    """Merge single-turn items that share `image` and `lang` into conversations of <= `max_turns` turns.

    The first human turn keeps its `<image>` marker, later ones lose it (one image per conversation).
    Items keep their order inside a conversation; a conversation takes the id of its first item.
    """
    if max_turns < 1:
        raise ValueError(f"--max-turns must be at least 1, got {max_turns}")
    groups: dict[tuple[str, str], list[dict]] = {}
    for item in items:
        groups.setdefault((item.get("image", ""), item.get("lang", "")), []).append(item)
    merged = []
    for group in groups.values():
        for start in range(0, len(group), max_turns):
            chunk = group[start : start + max_turns]
            turns = [dict(turn) for turn in chunk[0]["conversations"]]
            for item in chunk[1:]:
                human, *rest = item["conversations"]
                question = human["value"].replace(IMAGE_MARKER + "\n", "").replace(IMAGE_MARKER, "")
                turns += [{**human, "value": question}, *(dict(turn) for turn in rest)]
            merged.append({**chunk[0], "conversations": turns})
    return merged


def length_bucketed_order(lengths: list[int], batch_size: int, rng: random.Random) -> list[int]:
    """A permutation of `range(len(lengths))` whose consecutive `batch_size` slices hold similar lengths.

    Shuffle, cut into megabatches of `MEGABATCH_FACTOR` batches, sort each megabatch by length, cut
    it into batches, and shuffle the full batches: random like a shuffle, with little padding per
    batch. A short last batch goes last, so it cannot shift every later batch off its boundary.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * MEGABATCH_FACTOR
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    full = [batch for batch in batches if len(batch) == batch_size]
    rng.shuffle(full)
    short = [i for batch in batches if len(batch) != batch_size for i in batch]
    return [i for batch in full for i in batch] + short


def token_lengths(items: list[dict], tokenizer) -> list[int]:
    """Text tokens of each item's turns (the image tokens are the same for every item)."""
    texts = ["\n".join(turn["value"] for turn in item["conversations"]) for item in items]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def write_training_order(
    source: Path, target: Path, tokenizer, batch_size: int, epochs: float, seed: int, max_turns: int = 1
) -> int:
    """Write `round(epochs * N)` conversations of `source` to `target` in length-bucketed batches.

    N counts conversations after merging up to `max_turns` items per (image, language). Each epoch
    is its own reshuffled pass. Returns the number of conversations written.
    """
    items = merge_turns(json.loads(source.read_text(encoding="utf-8")), max_turns)
    if not items:
        raise ValueError(f"{source} holds no items; build the data with more --num-stage1/--num-stage2")
    lengths = token_lengths(items, tokenizer)
    total = max(1, round(epochs * len(items)))
    rng = random.Random(f"{seed}/{source.name}")
    ordered: list[dict] = []
    for _ in range(math.ceil(total / len(items))):
        ordered += [items[i] for i in length_bucketed_order(lengths, batch_size, rng)]
    target.write_text(json.dumps(ordered[:total], ensure_ascii=False), encoding="utf-8")
    return total


def common_flags(settings: QuickstartSettings, output_dir: Path, num_items: int, batch_size: int) -> list[str]:
    """Trainer flags shared by both stages (CPU, float32, one pass over an ordered file)."""
    steps = max(1, math.ceil(num_items / batch_size))
    return [
        "--output_dir", str(output_dir),
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


@dataclass(frozen=True)
class Stage1Output:
    """What stage 2 starts from: its `--model_name_or_path`, `--vision_tower`, `--pretrain_mm_mlp_adapter`."""

    llm: Path
    vision_tower: Path
    projector: Path


def stage1_argv(
    settings: QuickstartSettings, llm: Path, tower: Path, data_dir: Path, ordered: Path, num_items: int, out: Path
) -> list[str]:
    """Stage 1: `plain` captions into `out`, the `mlp2x_gelu` projector (and, by default, the LLM) trains.

    With `stage1_tune_llm` off this is upstream's stage 1 (`--tune_mm_mlp_adapter`, writes
    `out/mm_projector.bin`); on, it trains projector + LLM and writes a full checkpoint.
    """
    return [
        "--model_name_or_path", str(llm),
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
    """Stage 2: `qwen_2` (ChatML) instructions; projector, LLM and (optionally) the vision tower train."""
    argv = [
        "--model_name_or_path", str(start.llm),
        "--vision_tower", str(start.vision_tower),
        "--version", "qwen_2",
        "--data_path", str(ordered),
        "--image_folder", str(data_dir / "images"),
        "--pretrain_mm_mlp_adapter", str(start.projector),
        "--mm_projector_type", projector,
        "--learning_rate", str(settings.stage2_lr),
        *common_flags(settings, out, num_items, settings.stage2_batch_size),
    ]
    if settings.unfreeze_vision_tower:
        argv += ["--unfreeze_mm_vision_tower", "True", "--mm_vision_tower_lr", str(settings.vision_tower_lr)]
    return argv


def run_training(argv: list[str]) -> list[dict]:
    """Train with `llava.train.train`; return the trainer's log history (losses, routing per language)."""
    from llava.train.train import train

    logger.info("python -m llava.train.train %s", " ".join(argv))
    trainer = train(argv)
    history = list(trainer.state.log_history)
    del trainer
    return history


def run_stage1(
    settings: QuickstartSettings, assets: dict[str, Path], tower: Path, data_dir: Path, work: Path
) -> Stage1Output:
    """Stage 1 into `work/stage1`; returns what stage 2 starts from."""
    out = work / "stage1"
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(assets[settings.llm])
    ordered = work / "stage1_ordered.json"
    count = write_training_order(
        data_dir / "stage1_captions.json", ordered, tokenizer, settings.stage1_batch_size, settings.stage1_epochs,
        settings.seed,
    )
    run_training(stage1_argv(settings, assets[settings.llm], tower, data_dir, ordered, count, out))
    if not settings.stage1_tune_llm:
        return Stage1Output(assets[settings.llm], tower, out / MM_PROJECTOR_FILE)
    parts = export_components(out, work / "stage1_split")
    return Stage1Output(parts["llm"], parts["vision_tower"], parts["projector"])


def run_stage2(
    settings: QuickstartSettings,
    assets: dict[str, Path],
    data_dir: Path,
    work: Path,
    start: Stage1Output,
    variant: Stage2Variant,
    out: Path,
) -> list[dict]:
    """Stage 2 of `variant` into `out` (a full checkpoint); returns the log history."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(assets[settings.llm])
    ordered = work / f"ordered_{variant.data_file}"
    count = write_training_order(
        data_dir / variant.data_file, ordered, tokenizer, settings.stage2_batch_size, settings.stage2_epochs,
        settings.seed, settings.max_turns,
    )
    argv = stage2_argv(settings, start, data_dir, ordered, count, variant.projector, out)
    return run_training(argv)
