"""MME's output files: `<name>_score.csv` (VLMEvalKit's layout) and `summary_mme.md/.json`.

- `<name>_score.csv`: one row, columns `perception`, `reasoning` (cognition), then every subtask's
  score (`acc + acc+`), as VLMEvalKit's MME rating writes it.
- `summary_mme.json`: every entry's counts (what later merges read back); an entry scored again
  (same dataset name) replaces the old one. A summary of another model is refused.
- `summary_mme.md`: totals, then one row per subtask with `acc`, `acc+` and the score.
"""

from __future__ import annotations

import json
from pathlib import Path

from llava.eval.mme import PERCEPTION, SUBTASKS, MMEResult, Subtask
from llava.eval.reports import atomic_write_rows, atomic_write_text
from llava.eval.summary import SummaryMismatchError, identity_fields


def write_score_csv(result: MMEResult, path: Path) -> None:
    names = [name for name in SUBTASKS if name in result.subtasks]
    values = [result.perception, result.cognition, *(result.subtasks[name].score for name in names)]
    atomic_write_rows(path, ["perception", "reasoning", *names], [[f"{v:.6f}" for v in values]], delimiter=",")


def mme_to_dict(result: MMEResult) -> dict:
    return {
        **identity_fields(result),
        "subtasks": {
            name: {"questions": t.questions, "right": t.right, "images": dict(t.images)}
            for name, t in result.subtasks.items()
        },
        "rows": result.rows,
        "rows_with_issues": result.rows_with_issues,
        "no_answer": result.no_answer,
    }


def mme_from_dict(entry: dict) -> MMEResult:
    subtasks = {
        name: Subtask(questions=t["questions"], right=t["right"], images={k: list(v) for k, v in t["images"].items()})
        for name, t in entry["subtasks"].items()
    }
    return MMEResult(
        name=entry["name"],
        language=entry["language"],
        prompt_style=entry["prompt_style"],
        subtasks=subtasks,
        rows=entry["rows"],
        rows_with_issues=entry["rows_with_issues"],
        no_answer=entry["no_answer"],
    )


def mme_markdown(results: list[MMEResult], model_name: str) -> str:
    lines = [f"# MME: {model_name}", "", "| file | prompt style | perception | cognition | total | rows | with problems | no answer |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in results:
        lines.append(
            f"| {r.name} | {r.prompt_style} | {r.perception:.2f} | {r.cognition:.2f} | {r.total:.2f} | "
            f"{r.rows} | {r.rows_with_issues} | {r.no_answer} |"
        )
    for r in results:
        lines += ["", f"## {r.name}: per subtask", "", "| subtask | group | acc | acc+ | score |", "|---|---|---|---|---|"]
        for name in SUBTASKS:
            group = "perception" if name in PERCEPTION else "cognition"
            if name in r.subtasks:
                t = r.subtasks[name]
                lines.append(f"| {name} | {group} | {t.acc:.2f} | {t.acc_plus:.2f} | {t.score:.2f} |")
            else:
                lines.append(f"| {name} | {group} | - | - | - |")
        if r.missing:
            lines += ["", f"Missing from the file (they add nothing): {', '.join(r.missing)}."]
    return "\n".join(lines) + "\n"


def write_mme_summary(results: list[MMEResult], directory: Path, model_name: str) -> str:
    """Merge `results` into `directory/summary_mme.json` and redraw `summary_mme.md`; return the markdown."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "summary_mme.json"
    earlier: list[MMEResult] = []
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            earlier = [mme_from_dict(entry) for entry in data["results"]]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise SummaryMismatchError(f"{path} cannot be read ({err}); move it away to start a new summary") from None
        if data.get("model") != model_name:
            raise SummaryMismatchError(
                f"{path} summarises model {data.get('model')!r}, not {model_name!r}: write this model's summary "
                f"elsewhere (--summary-dir / --output-dir) or pass --model-name {data.get('model')}"
            )
    replaced = {r.name: r for r in results}
    merged = [replaced.pop(r.name, r) for r in earlier] + [r for r in results if r.name in replaced]
    record = {"model": model_name, "benchmark": "MME", "results": [mme_to_dict(r) for r in merged]}
    atomic_write_text(path, json.dumps(record, ensure_ascii=False, indent=1) + "\n")
    text = mme_markdown(merged, model_name)
    atomic_write_text(directory / "summary_mme.md", text)
    return text

