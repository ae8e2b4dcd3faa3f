"""Training data in LLaVA format: stage-1 captions and stage-2 instructions from the train split.

Every item is `{"id", "image", "conversations": [human, gpt], "lang"}`; `image` is relative to
`--image_folder OUT/images`. Which language an item is in comes from the language mix; the
rest of the item (image, question, options) is drawn before, and independently of, the language,
so `stage2_instruct_en_only.json` is the very same items in English.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tqdm import tqdm

from playground.easyvqa.source import SourceQuestion, image_file, read_image_attributes
from playground.easyvqa.translations import (
    COLORS,
    DISTRACTOR_SHAPE,
    LANGUAGES,
    NO,
    SHAPES,
    YES,
    Template,
    TranslationTable,
    format_mcq_prompt,
)

IMAGE_TOKEN = "<image>"
DEFAULT_MIX: dict[str, float] = {"en": 0.8, "zh": 0.04, "pt": 0.04, "ar": 0.04, "tr": 0.04, "ru": 0.04}


def parse_mix(text: str) -> dict[str, float]:
    """`en=0.8,zh=0.04,...` -> weights summing to 1; unlisted languages get 0. `cn` means `zh`."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        lang, sep, value = part.partition("=")
        lang = "zh" if lang.strip() == "cn" else lang.strip()
        if not sep or lang not in LANGUAGES:
            raise ValueError(f"--mix entry {part!r}: write LANG=WEIGHT with LANG one of {', '.join(LANGUAGES)}")
        try:
            weight = float(value)
        except ValueError as err:
            raise ValueError(f"--mix entry {part!r}: {value!r} is not a number") from err
        if weight < 0:
            raise ValueError(f"--mix entry {part!r}: weights must be >= 0")
        mix[lang] = weight
    total = sum(mix.values())
    if total <= 0:
        raise ValueError(f"--mix {text!r} gives no language a positive weight")
    return {lang: mix.get(lang, 0.0) / total for lang in LANGUAGES}


def assign_languages(count: int, mix: dict[str, float], rng: random.Random) -> list[str]:
    """Exactly `round(count * weight)` items per language (largest remainder), in shuffled order."""
    exact = {lang: count * mix.get(lang, 0.0) for lang in LANGUAGES}
    counts = {lang: int(value) for lang, value in exact.items()}
    by_remainder = sorted(LANGUAGES, key=lambda lang: (-(exact[lang] - counts[lang]), LANGUAGES.index(lang)))
    for lang in by_remainder[: count - sum(counts.values())]:
        counts[lang] += 1
    languages = [lang for lang in LANGUAGES for _ in range(counts[lang])]
    rng.shuffle(languages)
    return languages


def draw_cycling(population: list, count: int, rng: random.Random) -> list:
    """`count` elements: shuffled passes over the population, without repeats inside a pass."""
    drawn: list = []
    while len(drawn) < count:
        order = list(population)
        rng.shuffle(order)
        drawn.extend(order[: count - len(drawn)])
    return drawn


def mcq_options(kind: str, answer: str, rng: random.Random) -> list[str]:
    """English keys of the options, in display order: 4 for colour/shape, 2 for yes/no."""
    if kind == "color":
        options = [answer, *rng.sample([c for c in COLORS if c != answer], 3)]
    elif kind == "shape":
        options = [*SHAPES, DISTRACTOR_SHAPE]
    else:
        options = [YES, NO]
    rng.shuffle(options)
    return options


def llava_item(item_id: str, image: str, human: str, gpt: str, lang: str) -> dict:
    return {
        "id": item_id,
        "image": image,
        "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}],
        "lang": lang,
    }


def train_image_path(image_id: int) -> str:
    """Where a train image goes under OUT/images (and the `image` field of its items)."""
    return f"train/{image_id}.png"


def build_stage1(table: TranslationTable, image_ids: list[int], languages: list[str]) -> list[dict]:
    """One `plain`-template caption per image: human turn is just `<image>`, gpt turn the caption."""
    items = []
    attributes: dict[int, tuple[str, str]] = {}
    for number, (image_id, lang) in enumerate(tqdm(list(zip(image_ids, languages)), desc="stage-1 captions")):
        if image_id not in attributes:
            attributes[image_id] = read_image_attributes(image_file("train", image_id))
        color, shape = attributes[image_id]
        caption = table.caption(lang, color, shape)
        items.append(llava_item(f"easyvqa-s1-{number:06d}", train_image_path(image_id), IMAGE_TOKEN, caption, lang))
    return items


@dataclass(frozen=True)
class InstructSpec:
    """A stage-2 item before rendering: the question, its answer, and options when it is an MCQ."""

    image_id: int
    template: Template
    color: str | None
    shape: str | None
    answer: str  # English key
    options: tuple[str, ...] | None  # English keys in display order; None for a free-form item


def draw_stage2_specs(
    table: TranslationTable, questions: list[SourceQuestion], count: int, mcq_fraction: float, rng: random.Random
) -> list[InstructSpec]:
    """`count` easy-VQA train questions; a `mcq_fraction` share of them become multiple choice."""
    specs = []
    for question in draw_cycling(questions, count, rng):
        template, color, shape = table.match_english(question.text)
        options = None
        if rng.random() < mcq_fraction:
            options = tuple(mcq_options(template.kind, question.answer, rng))
        specs.append(InstructSpec(question.image_id, template, color, shape, question.answer, options))
    return specs


def render_stage2(table: TranslationTable, specs: list[InstructSpec], languages: list[str], desc: str) -> list[dict]:
    """LLaVA items: free-form answers are answer words in the item's language, MCQ answers letters."""
    items = []
    for number, (spec, lang) in enumerate(tqdm(list(zip(specs, languages)), desc=desc)):
        question = table.question(spec.template, lang, color=spec.color, shape=spec.shape)
        if spec.options is None:
            prompt, reply = question, table.answer(spec.answer, lang)
        else:
            words = [table.answer(key, lang) for key in spec.options]
            prompt = format_mcq_prompt(table, question, words, lang)
            reply = chr(ord("A") + spec.options.index(spec.answer))
        human = f"{IMAGE_TOKEN}\n{prompt}"
        items.append(llava_item(f"easyvqa-s2-{number:06d}", train_image_path(spec.image_id), human, reply, lang))
    return items
