"""The quickstart: a miniature of the whole pipeline (assets, data, two training stages, evaluation,
reports) and the pieces it is built from."""

from __future__ import annotations

import csv
import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from llava.eval.benchmark import read_benchmark
from playground.easyvqa.probes import SKILLS
from playground.easyvqa.translations import LANGUAGES, load_table
from playground.quickstart.cli import build_parser, main
from playground.quickstart.evaluate import freeform_probe, normalize_answer
from playground.quickstart.report import write_ablation
from playground.quickstart.settings import DEFAULT, FAST, settings_from_args
from playground.quickstart.training_order import length_bucketed_order, write_training_order

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> tuple[Path, float]:
    """`python -m playground.quickstart --fast --out DIR`, run once; (DIR, wall seconds).

    The wall time is not asserted (shared machines are noisy): results.md reports it per step."""
    out = tmp_path_factory.mktemp("quickstart")
    started = time.perf_counter()
    assert main(["--fast", "--out", str(out)]) == 0
    return out, time.perf_counter() - started


def _results_csv(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_fast_run_writes_every_output_file(fast_run):
    out, _ = fast_run
    for name in ("results.md", "results.csv", "settings.json", "expert_distribution.csv", "curves.csv"):
        assert (out / name).is_file(), name
    for name in ("radar.png", "expert_distribution.png", "curves.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (out / "checkpoint" / name).is_file(), name


def test_results_table_has_a_column_per_language(fast_run):
    out, _ = fast_run
    header = next(line for line in (out / "results.md").read_text(encoding="utf-8").splitlines() if "metric (%)" in line)
    assert [cell.strip() for cell in header.strip("|").split("|")][1:] == list(LANGUAGES)


def test_results_csv_has_every_metric_in_every_language(fast_run):
    out, _ = fast_run
    languages_per_metric: dict[str, set[str]] = {}
    for row in _results_csv(out):
        languages_per_metric.setdefault(row["metric"], set()).add(row["language"])
    assert {"MMMB overall", "yes/no (pairs)", "colour (MCQ)", "shape (MCQ)",
            "free-form: answer in the question's language"} <= set(languages_per_metric)
    assert all(languages == set(LANGUAGES) for languages in languages_per_metric.values())


def test_learning_curves_cover_every_stage_skill_and_language(fast_run):
    out, _ = fast_run
    with (out / "curves.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    stages = {row["stage"] for row in rows}
    assert stages == {"stage 0", "stage 1", "stage 2: parrot_moe (mix)"}
    for stage in stages:
        probed = {(row["skill"], row["language"]) for row in rows if row["stage"] == stage}
        assert probed == {(skill, lang) for skill in SKILLS for lang in LANGUAGES}, stage
    stage2_steps = sorted({int(row["step"]) for row in rows if row["stage"].startswith("stage 2")})
    assert stage2_steps[0] == 0 and len(stage2_steps) >= 3  # before training, every probe_every steps, at the end


def test_yes_no_questions_are_scored_as_pairs_and_mcqs_singly(fast_run):
    out, _ = fast_run
    benchmark = read_benchmark(out / "work" / "data" / "MMMB_en.tsv")
    rows = Counter(item.get("category") for item in benchmark.items)
    totals = {row["metric"]: int(row["total"]) for row in _results_csv(out) if row["language"] == "en"}
    assert totals["yes/no (pairs)"] == rows["yes_no"] // 2
    assert totals["colour (MCQ)"] == rows["color"]
    assert totals["shape (MCQ)"] == rows["shape"]


def test_expert_distribution_has_a_row_per_prompt_language(fast_run):
    out, _ = fast_run
    with (out / "expert_distribution.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["lang"] for row in rows] == list(LANGUAGES)
    for row in rows:
        shares = [float(value) for key, value in row.items() if key.startswith("expert_")]
        assert len(shares) == 6 and sum(shares) == pytest.approx(1.0, abs=1e-3)


def test_checkpoint_loads_and_answers_with_load_pretrained_model(fast_run):
    from llava.inference import generate_batch
    from llava.model.builder import load_pretrained_model

    out, _ = fast_run
    tokenizer, model, image_processor, _ = load_pretrained_model(str(out / "checkpoint"))
    assert model.config.mm_projector_type == "parrot_moe"
    replies = generate_batch(
        model, tokenizer, image_processor, ["What color is the shape?"], [Image.new("RGB", (64, 64), "red")],
        max_new_tokens=4,
    )
    assert len(replies) == 1 and isinstance(replies[0], str)


def test_freeform_probe_counts_only_answer_words_of_the_question_language(fast_run):
    out, _ = fast_run
    table = load_table()
    benchmark = read_benchmark(out / "work" / "data" / "MMMB_ru.tsv", language="ru")
    expected = [item.options[item.answer] for item in benchmark.items[:6]]
    in_english = {normalize_answer(table.answer(key, "ru")): table.answer(key, "en") for key in table.answer_vocabulary("ru")}

    def replier(words):
        queue = iter(words)
        return lambda prompts, images: [next(queue) for _ in prompts]

    russian = freeform_probe(benchmark, "ru", replier([f"{word}." for word in expected]), count=6, batch_size=4)
    assert (russian.asked, russian.in_language, russian.correct) == (6, 6, 6)
    english_words = [in_english[normalize_answer(word)] for word in expected]
    english = freeform_probe(benchmark, "ru", replier(english_words), count=6, batch_size=4)
    assert (english.asked, english.in_language, english.correct) == (6, 0, 0)


def test_ablation_report_has_a_row_and_bars_per_variant(fast_run, tmp_path):
    from playground.quickstart.evaluate import evaluate_checkpoint

    out, _ = fast_run
    evaluation = evaluate_checkpoint(
        out / "checkpoint", out / "work" / "data", tmp_path / "eval", batch_size=32, max_new_tokens=2, freeform_probes=2
    )
    names = ["mlp2x_gelu (English only)", "mlp2x_gelu (mix)", "parrot_moe (mix)"]
    table = write_ablation({name: evaluation for name in names}, tmp_path, header_lines=[])
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == names
    assert (tmp_path / "ablation.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "ablation.md").is_file() and (tmp_path / "ablation.csv").is_file()


def test_length_bucketed_order_is_a_permutation_with_similar_lengths_per_batch():
    rng = random.Random(0)
    lengths = [rng.randint(10, 200) for _ in range(1000)]
    order = length_bucketed_order(lengths, batch_size=16, rng=random.Random(1))
    assert sorted(order) == list(range(1000))
    spread = [max(lengths[i] for i in order[s : s + 16]) - min(lengths[i] for i in order[s : s + 16]) for s in range(0, 992, 16)]
    assert sum(spread) / len(spread) < 40  # a plain shuffle gives about 170


def test_training_order_writes_the_requested_number_of_epochs(tmp_path, tiny_assets):
    from transformers import AutoTokenizer

    items = [{"id": str(i), "conversations": [{"from": "human", "value": "q" * (i % 7 + 1)},
                                              {"from": "gpt", "value": "a"}]} for i in range(40)]
    source = tmp_path / "items.json"
    source.write_text(json.dumps(items))
    tokenizer = AutoTokenizer.from_pretrained(tiny_assets["llama"])
    written = write_training_order(source, tmp_path / "ordered.json", tokenizer, batch_size=8, epochs=2.5, seed=0)
    ordered = json.loads((tmp_path / "ordered.json").read_text())
    assert written == len(ordered) == 100
    counts = Counter(item["id"] for item in ordered)
    assert set(counts.values()) <= {2, 3} and len(counts) == 40


def test_command_line_flags_override_the_preset():
    args = build_parser().parse_args(["--fast", "--vision-hidden-size", "48", "--unfreeze-vision-tower", "false"])
    settings = settings_from_args(args, FAST)
    assert (settings.vision_hidden_size, settings.unfreeze_vision_tower, settings.vision_layers) == (48, False, FAST.vision_layers)
    assert settings_from_args(build_parser().parse_args([]), DEFAULT) == DEFAULT


def test_tower_pretraining_saves_a_loadable_trained_vision_tower(tiny_assets, tmp_path):
    import torch
    from transformers import AutoModel

    from llava.model.multimodal_encoder.vision_tower import VisionTower, load_vision_config
    from playground.quickstart.vision import pooled_patches, pretrain_vision_tower

    accuracy = pretrain_vision_tower(tiny_assets["clip"], tmp_path / "tower", steps=3, batch_size=8, max_images=40)
    assert set(accuracy) == {"color", "shape"} and all(0.0 <= value <= 1.0 for value in accuracy.values())
    before = AutoModel.from_pretrained(tiny_assets["clip"])
    after = AutoModel.from_pretrained(tmp_path / "tower")
    changed = [n for n, p in after.named_parameters() if not torch.equal(p, before.state_dict()[n])]
    assert "embeddings.patch_embedding.weight" in changed
    tower = VisionTower(load_vision_config(str(tmp_path / "tower")), select_layer=-1)
    tower.load_pretrained_weights(str(tmp_path / "tower"))  # what --vision_tower does with the folder
    pixels = torch.randn(2, 3, after.config.image_size, after.config.image_size)
    assert pooled_patches(after, pixels).shape == (2, after.config.hidden_size)
