"""A held-out probe set for learning curves: a few items per skill and language.

The images are easy-VQA *test* images that the benchmark files do not use, so a probe scored
during training reads no training image and no benchmark image. Items are LLaVA JSON with two
extra keys, `lang` and `skill`:

- `caption`: stage 1's `plain` item (`<image>` -> caption);
- `free-form`: a colour, shape or yes/no question answered with a word;
- `colour MCQ`, `shape MCQ`: four options, answered with a letter;
- `yes/no MCQ`: Yes/No as A/B (the benchmark's layout), answered with a letter.
"""

from __future__ import annotations

import random

from playground.easyvqa.source import image_file, read_image_attributes
from playground.easyvqa.training import IMAGE_TOKEN, QUESTION_KINDS, draw_question, llava_item, mcq_options
from playground.easyvqa.translations import LANGUAGES, TranslationTable, format_mcq_prompt

SKILLS: tuple[str, ...] = ("caption", "free-form", "colour MCQ", "shape MCQ", "yes/no MCQ")
MCQ_SKILLS: dict[str, str] = {"color": "colour MCQ", "shape": "shape MCQ", "yes_no": "yes/no MCQ"}
PROBE_IMAGE_FOLDER = "probe"


def probe_image_path(image_id: int) -> str:
    """Where a probe image goes under OUT/images (and the `image` field of its items)."""
    return f"{PROBE_IMAGE_FOLDER}/{image_id}.png"


def draw_probe_items(table: TranslationTable, image_ids: list[int], per_skill: int, rng: random.Random) -> list[dict]:
    """`per_skill` items for every (language, skill), on `image_ids` (test images) taken in turn."""
    attributes: dict[int, tuple[str, str]] = {}
    items: list[dict] = []
    for lang in LANGUAGES:
        for skill in SKILLS:
            for _ in range(per_skill):
                image_id = image_ids[len(items) % len(image_ids)]
                if image_id not in attributes:
                    attributes[image_id] = read_image_attributes(image_file("test", image_id))
                prompt, reply = probe_turn(table, skill, lang, *attributes[image_id], rng)
                human = f"{IMAGE_TOKEN}\n{prompt}" if prompt else IMAGE_TOKEN
                item = llava_item(f"easyvqa-probe-{len(items):05d}", probe_image_path(image_id), human, reply, lang)
                items.append({**item, "skill": skill})
    return items


def probe_turn(table: TranslationTable, skill: str, lang: str, color: str, shape: str, rng: random.Random) -> tuple[str, str]:
    """(prompt, reply) of one `skill` item about a `color` `shape`; a caption has no prompt."""
    if skill == "caption":
        return "", table.caption(lang, color, shape)
    kind = rng.choice(QUESTION_KINDS) if skill == "free-form" else next(k for k, s in MCQ_SKILLS.items() if s == skill)
    question = draw_question(table, kind, color, shape, rng)
    text = table.question(question.template, lang, color=question.color, shape=question.shape)
    if skill == "free-form":
        return text, table.answer(question.answer, lang)
    options = mcq_options(kind, question.answer, rng)
    prompt = format_mcq_prompt(table, text, [table.answer(key, lang) for key in options], lang)
    return prompt, chr(ord("A") + options.index(question.answer))
