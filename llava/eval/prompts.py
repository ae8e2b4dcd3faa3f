"""The prompt of one benchmark row, in a named prompt style.

`build_prompt` returns the *user message*; `llava.inference.generate_batch` puts `<image>` in
front of it and wraps it in the model's saved chat template (`model.config.conv_template`).

Styles (`PROMPT_STYLES`; every summary and model card records the one used):

- `ours` (default): `Hint\\nQuestion\\nA. ...\\nB. ...\\n<instruction in the item's language>`
  (`languages.ANSWER_INSTRUCTIONS`). Yes/no rows (MME): the question as written.
- `vlmevalkit`: VLMEvalKit's default multiple-choice prompt, English for every language:
  `Hint: ...\\nQuestion: ...\\nOptions:\\nA. ...\\n...Please select the correct answer from the
  options above. \\n`. Yes/no rows: the question as written (VLMEvalKit adds nothing).
- `parrot`: Parrot's own VLMEvalKit adapter: `Hint\\nQuestion\\nA. ...` then its translated
  instruction, chosen by the dataset's language suffix (`_cn`, `_pt`, `_ar`, `_ru`, `_tr`, or
  Chinese text), English otherwise. Yes/no rows: the question without its "Please answer yes or
  no." suffix, plus its strict yes/no instruction (in Chinese for Chinese text).
"""

from __future__ import annotations

import re

from llava.eval.benchmark import BenchmarkItem
from llava.eval.languages import ANSWER_INSTRUCTIONS, normalize_language

PROMPT_STYLES = ("ours", "vlmevalkit", "parrot")
DEFAULT_PROMPT_STYLE = "ours"

VLMEVALKIT_MCQ_INSTRUCTION = "Please select the correct answer from the options above. \n"
# Parrot's adapter: the instruction by the dataset name's last three characters.
PARROT_MCQ_INSTRUCTIONS = {
    "en": "Answer with the option's letter from the given choices directly.",
    "_cn": "请直接用给定选项中的选项字母回答。",
    "_pt": "Responda diretamente com a letra da opção das escolhas dadas.",
    "_ar": "أجب مباشرةً بحرف الخيار من الاختيارات المعطاة.",
    "_ru": "Ответьте буквой варианта из предложенных вариантов напрямую.",
    "_tr": "Verilen seçeneklerden doğrudan seçeneğin harfi ile cevap verin.",
}
PARROT_YORN_SUFFIXES = (" Please answer yes or no.", " Yes or No", " Answer in one sentence.")
PARROT_YORN_INSTRUCTION = {
    "en": "Please strictly answer Yes or No. Answer the question using a single word or phrase.",
    "zh": "请直接回答Yes或No。请用单个词或短语回答问题。",
}
_HAN = re.compile(r"[\u4e00-\u9fff]")


def check_prompt_style(style: str) -> str:
    if style not in PROMPT_STYLES:
        raise ValueError(f"--prompt-style {style!r} is not a prompt style; use one of {', '.join(PROMPT_STYLES)}")
    return style


def build_mcq_prompt(item: BenchmarkItem, language: str) -> str:
    """The `ours` multiple-choice prompt (kept for callers that predate the styles)."""
    lines = []
    if item.hint:
        lines.append(item.hint.strip())
    lines.append(item.question.strip())
    lines += [f"{letter}. {text}" for letter, text in item.options.items()]
    lines.append(ANSWER_INSTRUCTIONS[normalize_language(language)])
    return "\n".join(lines)


def _vlmevalkit_mcq(item: BenchmarkItem) -> str:
    prompt = f"Hint: {item.hint}\n" if item.hint else ""
    prompt += f"Question: {item.question}\n"
    if item.options:
        prompt += "Options:\n" + "".join(f"{letter}. {text}\n" for letter, text in item.options.items())
        prompt += VLMEVALKIT_MCQ_INSTRUCTION
    return prompt


def _parrot_mcq(item: BenchmarkItem, dataset: str) -> str:
    prompt = f"{item.hint}\n{item.question}" if item.hint else item.question
    prompt += "".join(f"\n{letter}. {text}" for letter, text in item.options.items())
    suffix = dataset[-3:].lower()
    if suffix == "_cn" or _HAN.search(prompt):
        suffix = "_cn"
    return prompt + "\n" + PARROT_MCQ_INSTRUCTIONS.get(suffix, PARROT_MCQ_INSTRUCTIONS["en"])


def _parrot_yorn(item: BenchmarkItem) -> str:
    prompt = item.question
    for suffix in PARROT_YORN_SUFFIXES:
        if prompt.endswith(suffix):
            prompt = prompt[: -len(suffix)]
            break
    return prompt + "\n" + PARROT_YORN_INSTRUCTION["zh" if _HAN.search(prompt) else "en"]


def build_prompt(
    item: BenchmarkItem, language: str, *, style: str = DEFAULT_PROMPT_STYLE, kind: str = "mcq", dataset: str = ""
) -> str:
    """The user message for one row in `style` (see the module docstring); `dataset` is the file's
    dataset name (the `parrot` style reads its language suffix)."""
    check_prompt_style(style)
    if kind == "yorn":
        return _parrot_yorn(item) if style == "parrot" else item.question
    if style == "vlmevalkit":
        return _vlmevalkit_mcq(item)
    if style == "parrot":
        return _parrot_mcq(item, dataset)
    return build_mcq_prompt(item, language)
