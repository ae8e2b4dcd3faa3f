"""The multiple-choice prompt: hint, question, lettered options, and the instruction in the item's language.

`build_mcq_prompt` returns the *user message*; `llava.inference.generate_batch` puts `<image>` in
front of it and wraps it in the model's saved chat template (`model.config.conv_template`).
"""

from __future__ import annotations

from llava.eval.benchmark import BenchmarkItem
from llava.eval.languages import ANSWER_INSTRUCTIONS, normalize_language


def build_mcq_prompt(item: BenchmarkItem, language: str) -> str:
    """`Hint\\nQuestion\\nA. ...\\nB. ...\\n<instruction in language>` for one benchmark row."""
    lines = []
    if item.hint:
        lines.append(item.hint.strip())
    lines.append(item.question.strip())
    lines += [f"{letter}. {text}" for letter, text in item.options.items()]
    lines.append(ANSWER_INSTRUCTIONS[normalize_language(language)])
    return "\n".join(lines)
