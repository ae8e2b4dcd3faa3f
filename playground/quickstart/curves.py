"""Learning curves: probe accuracy per skill and language, every N steps of every stage.

An answer is right when greedy next-token prediction, teacher-forced, gets every token of it,
the token that closes it included (`answer_is_right`).

Rows are `stage, step, skill, language, accuracy, items` in `curves.csv`; `curves.png` draws one
row of panels per stage and one panel per skill, a line per language.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llava.eval.languages import LANGUAGE_NAMES
from playground.easyvqa.probes import SKILLS
from playground.easyvqa.translations import COLORS, LANGUAGES, SHAPES, TranslationTable

COLUMNS = ("stage", "step", "skill", "language", "accuracy", "items")


@dataclass
class CurveLog:
    """Probe results in the order they were measured."""

    rows: list[dict] = field(default_factory=list)

    def add(self, stage: str, step: int, scores: dict[tuple[str, str], tuple[int, int]]) -> None:
        """`scores`: (skill, language) -> (right, asked) at `step` of `stage`."""
        for (skill, lang), (right, asked) in scores.items():
            self.rows.append(
                {"stage": stage, "step": step, "skill": skill, "language": lang,
                 "accuracy": right / asked if asked else 0.0, "items": asked}
            )

    def last(self, stage: str) -> dict[tuple[str, str], float]:
        """(skill, language) -> accuracy at the last probed step of `stage`."""
        rows = [row for row in self.rows if row["stage"] == stage]
        final = max((row["step"] for row in rows), default=None)
        return {(row["skill"], row["language"]): row["accuracy"] for row in rows if row["step"] == final}

    def write_csv(self, path: Path) -> None:
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({**row, "accuracy": f"{row['accuracy']:.4f}"})

    @classmethod
    def read_csv(cls, path: Path) -> CurveLog:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = [
                {**row, "step": int(row["step"]), "accuracy": float(row["accuracy"]), "items": int(row["items"])}
                for row in csv.DictReader(handle)
            ]
        return cls(rows)

    def plot(self, path: Path, title: str) -> None:
        """One row of panels per stage, one panel per skill, a line per language."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        stages = list(dict.fromkeys(row["stage"] for row in self.rows))
        skills = {
            stage: sorted({r["skill"] for r in self.rows if r["stage"] == stage}, key=_skill_order) for stage in stages
        }
        columns = max((len(names) for names in skills.values()), default=1)
        figure, axes = plt.subplots(
            len(stages), columns, figsize=(3.2 * columns, 2.6 * len(stages)), squeeze=False, sharey=True
        )
        for row_number, stage in enumerate(stages):
            for column in range(columns):
                axis = axes[row_number][column]
                if column >= len(skills[stage]):
                    axis.axis("off")
                    continue
                skill = skills[stage][column]
                for lang in LANGUAGES:
                    points = [(r["step"], 100 * r["accuracy"]) for r in self.rows
                              if r["stage"] == stage and r["skill"] == skill and r["language"] == lang]
                    if points:
                        axis.plot(*zip(*points), marker=".", linewidth=1, label=LANGUAGE_NAMES[lang])
                axis.set_title(f"{stage}: {skill}", fontsize="small")
                axis.set_ylim(-2, 102)
                axis.grid(alpha=0.3)
                axis.set_xlabel("step", fontsize="small")
            axes[row_number][0].set_ylabel("accuracy (%)", fontsize="small")
        handles, labels = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=len(LANGUAGES), fontsize="small", frameon=False)
        figure.suptitle(title, fontsize="medium")
        figure.tight_layout(rect=(0, 0.05, 1, 0.97))
        figure.savefig(path, dpi=110)
        plt.close(figure)


def _skill_order(skill: str) -> tuple[int, str]:
    return (SKILLS.index(skill) if skill in SKILLS else len(SKILLS), skill)


def caption_first_tokens(tokenizer, table: TranslationTable) -> dict[str, torch.Tensor]:
    """language -> ids that can begin a caption (+ newline) in that language.

    Nothing in a `plain` caption item says which language to write (stage 1's data mixes them), so
    probes score a caption's first token among its own language's openings only: "would the model
    caption this image right, in that language".
    """
    return {
        lang: torch.tensor(sorted({
            tokenizer(table.caption(lang, color, shape) + "\n", add_special_tokens=False)["input_ids"][0]
            for color in COLORS for shape in SHAPES
        }))
        for lang in LANGUAGES
    }


def answer_is_right(logits: torch.Tensor, targets: torch.Tensor, first_choices: torch.Tensor | None = None) -> bool:
    """Greedy next-token prediction (`logits` (n, V) at the n positions before `targets` (n,)) gets every target.

    With `first_choices`, the first token is chosen among those ids only.
    """
    predicted = logits.argmax(-1)
    if first_choices is not None:
        predicted[0] = first_choices[logits[0, first_choices].argmax()]
    return bool((predicted == targets).all())
