"""Evaluation results onto the evaluated checkpoint's model card (`README.md`, see `llava.model.model_card`).

Each scored file becomes one `model-index` entry (dataset `type` = the benchmark family, `name` = the
file's dataset name, `config` = the language, metric = accuracy in percent with the scoring rule), and
the card's evaluation section is re-drawn as one table, benchmarks as rows and languages as columns,
from every entry the card holds. Entries of files not scored this time are kept, so MMMB and MMBench
evaluated in two runs end up on one card. A checkpoint without a card gets one drawn from its config.
"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard

from llava.eval.mme import MMEResult
from llava.eval.reports import benchmark_family, markdown_table, ordered_languages
from llava.eval.scoring import Accuracy
from llava.model.model_card import CARD_FILE, render_card, replace_section

logger = logging.getLogger(__name__)

TASK = "visual-question-answering"


def _card(folder: Path) -> ModelCard:
    path = folder / CARD_FILE
    if path.is_file():
        return ModelCard.load(path)
    from llava.model import LlavaConfig

    return render_card(LlavaConfig.from_pretrained(folder), name=folder.resolve().name)


def _entries(result: Accuracy | MMEResult) -> list[EvalResult]:
    """The card's entries for one result: its accuracy, or MME's perception and cognition scores;
    every entry records the rule (`metric_config`) and the prompt style (`metric_args`)."""
    common = dict(
        task_type=TASK,
        dataset_name=result.name,
        dataset_config=result.language,
        metric_config=result.rule,
        metric_args={"prompt_style": result.prompt_style},
    )
    if isinstance(result, MMEResult):
        return [
            EvalResult(
                dataset_type="MME",
                metric_type=f"mme_{part}",
                metric_value=round(value, 2),
                metric_name=f"MME {part} score (acc + acc+, {result.prompt_style} prompt)",
                **common,
            )
            for part, value in (("perception", result.perception), ("cognition", result.cognition))
        ]
    return [
        EvalResult(
            dataset_type=benchmark_family(result.name),
            metric_type="accuracy",
            metric_value=round(100 * result.overall.accuracy, 2),
            metric_name=f"accuracy ({result.rule} rule, {result.prompt_style} prompt)",
            **common,
        )
    ]


def _style(entry: EvalResult) -> str:
    return (entry.metric_args or {}).get("prompt_style", "ours")


def _key(entry: EvalResult) -> tuple[str, str]:
    return entry.dataset_name, entry.metric_type


def evaluation_table(entries: list[EvalResult]) -> str:
    """Markdown: one row per benchmark family, rule and prompt style, one column per language;
    accuracy in percent (MME: its perception and cognition scores)."""
    rows: dict[str, dict[str, str]] = {}
    for entry in entries:
        metric = "" if entry.metric_type == "accuracy" else f" {entry.metric_type.removeprefix('mme_')}"
        label = f"{entry.dataset_type}{metric} ({entry.metric_config} rule, {_style(entry)} prompt)"
        rows.setdefault(label, {})[entry.dataset_config] = f"{entry.metric_value:.2f}"
    languages = ordered_languages(entry.dataset_config for entry in entries)
    intro = (
        "Accuracy (%) from `python -m llava.eval.run_benchmark`, judge-free answer extraction; MME rows are "
        "VLMEvalKit's MME scores (sum of acc + acc+ over the subtasks). The prompt style is named per row."
    )
    return "\n".join(["## Evaluation", "", intro, "", *markdown_table("Benchmark", rows, languages)])


def record_results_on_card(checkpoint: str | Path, results: list[Accuracy | MMEResult]) -> Path | None:
    """Merge `results` into `checkpoint/README.md`; returns its path, or None when `checkpoint` is not a
    local checkpoint folder (a hub id: its card is the Hub's to change)."""
    folder = Path(checkpoint)
    if not (folder / "config.json").is_file():
        return None
    card = _card(folder)
    merged = {_key(entry): entry for entry in card.data.eval_results or []}
    merged.update({_key(entry): entry for result in results for entry in _entries(result)})
    card.data.eval_results = list(merged.values())
    card.data.model_name = card.data.model_name or folder.resolve().name
    card.text = replace_section(card.text, evaluation_table(card.data.eval_results))
    path = folder / CARD_FILE
    try:
        card.save(path)
    except OSError as error:  # a read-only checkpoint still gets its scores, in the output folder
        logger.warning("could not record the scores on the model card %s: %s", path, error)
        return None
    logger.info("recorded %d results on the model card %s", len(results), path)
    return path
