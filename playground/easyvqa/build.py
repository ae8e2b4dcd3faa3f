"""Build the six-language easy-VQA data set: training JSON, train images, benchmark TSVs, manifest.

Output (`OUT`):
    images/train/{id}.png           train images used by the JSON files (`--image_folder OUT/images`)
    stage1_captions.json            stage 1, `plain` template captions
    stage2_instruct.json            stage 2, free-form + multiple-choice, mixed languages, set kind shares
    stage2_instruct_en_only.json    the same stage-2 items, all in English (ablation)
    stage2_instruct_<name>.json     the same stage-2 items under each extra mix of `stage2_mixes` (ablation)
    stage1_captions_en_only.json    the same stage-1 captions, all in English (the paper's stage-1 data)
    MMMB_{en,cn,pt,ar,tr,ru}.tsv    test split, pairs of yes/no + 4-option MCQ
    MMBench_dev_{...}.tsv           the same items with circular copies
    images/probe/, probe.json       with probe_per_skill > 0: held-out items per skill and language
                                    (test images the benchmarks do not use), for learning curves
    manifest.json                   seed, mix and counts per file and language

Everything is a function of the seed and the sizes: two builds give byte-identical files.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from playground.easyvqa.benchmarks import draw_test_items, write_benchmarks
from playground.easyvqa.probes import PROBE_IMAGE_FOLDER, draw_probe_items
from playground.easyvqa.source import easy_vqa_version, image_file, image_ids, read_image_attributes
from playground.easyvqa.training import (
    DEFAULT_KIND_SHARES,
    DEFAULT_MIX,
    assign_languages,
    build_stage1,
    draw_cycling,
    draw_stage2_specs,
    render_stage2,
)
from playground.easyvqa.translations import load_table

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PROBE_FILE = "probe.json"


@dataclass
class BuildConfig:
    """What to build; the defaults build in well under a minute on 2 CPU cores."""

    out: Path
    seed: int = 0
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    num_stage1: int = 4000
    num_stage2: int = 20000
    num_test_images: int = 999
    mcq_fraction: float = 0.3
    kind_shares: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_KIND_SHARES))
    probe_per_skill: int = 0  # > 0 writes probe.json: held-out items per skill and language
    stage2_mixes: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> mix, one file each


def _prepare_out(out: Path) -> None:
    """Use a new or empty folder, or one holding an earlier build (its images are replaced)."""
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise FileExistsError(f"--out {out} is not empty and holds no {MANIFEST}: pass a new or empty folder")
    shutil.rmtree(out / "images", ignore_errors=True)
    (out / "images" / "train").mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _count_langs(items: list[dict]) -> dict:
    per_lang = Counter(item["lang"] for item in items)
    return {"items": len(items), "per_lang": dict(sorted(per_lang.items()))}


def _check_config(config: BuildConfig) -> None:
    for flag, value in (("--num-stage1", config.num_stage1), ("--num-stage2", config.num_stage2)):
        if value < 0:
            raise ValueError(f"{flag} must be >= 0, got {value}")
    available = len(image_ids("test"))
    if not 1 <= config.num_test_images <= available:
        raise ValueError(f"--num-test-images must be between 1 and {available} (the easy-VQA test split)")
    if not 0.0 <= config.mcq_fraction <= 1.0:
        raise ValueError(f"--mcq-fraction must be in [0, 1], got {config.mcq_fraction}")
    if config.probe_per_skill < 0:
        raise ValueError(f"--probe-per-skill must be >= 0, got {config.probe_per_skill}")
    if config.probe_per_skill and config.num_test_images == available:
        raise ValueError(
            f"--probe-per-skill reads test images the benchmarks leave out: pass --num-test-images below {available}"
        )


def _copy_images(ids: set[int], split: str, folder: Path) -> int:
    """Copy easy-VQA images `ids` of `split` into `folder`; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in tqdm(sorted(ids), desc=f"copying {split} images to {folder.name}/"):
        shutil.copyfile(image_file(split, image_id), folder / f"{image_id}.png")
    return len(ids)


def build(config: BuildConfig) -> dict:
    """Write every file under `config.out`; return the manifest."""
    _check_config(config)
    out = Path(config.out)
    _prepare_out(out)
    table = load_table()
    seed = config.seed

    attributes = {
        image_id: read_image_attributes(image_file("train", image_id))
        for image_id in tqdm(image_ids("train"), desc="reading train images")
    }
    stage1_images = draw_cycling(image_ids("train"), config.num_stage1, random.Random(f"{seed}/stage1/images"))
    stage1_langs = assign_languages(config.num_stage1, config.mix, random.Random(f"{seed}/stage1/langs"))
    stage1 = build_stage1(table, stage1_images, stage1_langs, attributes)

    specs = draw_stage2_specs(
        table, attributes, config.num_stage2, config.mcq_fraction, config.kind_shares, random.Random(f"{seed}/stage2")
    )
    stage2_langs = assign_languages(config.num_stage2, config.mix, random.Random(f"{seed}/stage2/langs"))
    stage2 = render_stage2(table, specs, stage2_langs, "stage-2 instructions")
    stage2_en = render_stage2(table, specs, ["en"] * len(specs), "stage-2 English-only")
    extra = {
        f"stage2_instruct_{name}.json": render_stage2(
            table, specs, assign_languages(config.num_stage2, mix, random.Random(f"{seed}/stage2/langs/{name}")),
            f"stage-2 {name}",
        )
        for name, mix in config.stage2_mixes.items()
    }
    stage1_en = build_stage1(table, stage1_images, ["en"] * len(stage1_images), attributes)

    used = _copy_images({*stage1_images, *(spec.image_id for spec in specs)}, "train", out / "images" / "train")

    files = {}
    for name, items in (
        ("stage1_captions.json", stage1),
        ("stage2_instruct.json", stage2),
        ("stage2_instruct_en_only.json", stage2_en),
        ("stage1_captions_en_only.json", stage1_en),
        *extra.items(),
    ):
        _write_json(out / name, items)
        files[name] = _count_langs(items)

    test_rng = random.Random(f"{seed}/test")
    test_images = sorted(test_rng.sample(image_ids("test"), config.num_test_images))
    test_rng.shuffle(test_images)
    test_items = draw_test_items(table, test_images, test_rng)
    files.update(write_benchmarks(table, test_items, out))

    probe_images = 0
    if config.probe_per_skill > 0:
        held_out = sorted(set(image_ids("test")) - set(test_images))
        random.Random(f"{seed}/probe/images").shuffle(held_out)
        probe = draw_probe_items(table, held_out, config.probe_per_skill, random.Random(f"{seed}/probe"))
        probe_images = _copy_images({int(Path(item["image"]).stem) for item in probe}, "test", out / "images" / PROBE_IMAGE_FOLDER)
        _write_json(out / PROBE_FILE, probe)
        files[PROBE_FILE] = _count_langs(probe)

    manifest = {
        "source": f"easy-vqa {easy_vqa_version()}",
        "seed": seed,
        "mix": config.mix,
        "stage2_mixes": config.stage2_mixes,
        "mcq_fraction": config.mcq_fraction,
        "kind_shares": config.kind_shares,
        "images": {"train": used, "test": len(test_images), "probe": probe_images},
        "test_units": dict(sorted(Counter(category for _, category in {(i.image_id, i.category) for i in test_items}).items())),
        "files": files,
    }
    _write_json(out / MANIFEST, manifest)
    logger.info("wrote %d files to %s", len(files) + 1, out)
    return manifest
