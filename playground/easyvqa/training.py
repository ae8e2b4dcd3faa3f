"""Training data in LLaVA format: stage-1 captions and stage-2 instructions from the train split.

Every item is `{"id", "image", "conversations": [human, gpt], "lang"}`; `image` is relative to
`--image_folder OUT/images`. Which language an item is in comes from the language mix; the
rest of the item (image, question, options) is drawn before, and independently of, the language,
so `stage2_instruct_en_only.json` is the very same items in English.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

from tqdm import tqdm

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
QUESTION_KINDS: tuple[str, ...] = ("color", "shape", "yes_no")
DEFAULT_KIND_SHARES: dict[str, float] = {kind: 1 / 3 for kind in QUESTION_KINDS}


def parse_weights(text: str, keys: tuple[str, ...], flag: str, aliases: dict[str, str] | None = None) -> dict[str, float]:
    """`KEY=WEIGHT,...` -> a weight per key of `keys`, summing to 1; unlisted keys get 0."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = (aliases or {}).get(key.strip(), key.strip())
        if not sep or key not in keys:
            raise ValueError(f"{flag} entry {part!r}: write KEY=WEIGHT with KEY one of {', '.join(keys)}")
        try:
            weight = float(value)
        except ValueError as err:
            raise ValueError(f"{flag} entry {part!r}: {value!r} is not a number") from err
        if weight < 0:
            raise ValueError(f"{flag} entry {part!r}: weights must be >= 0")
        weights[key] = weight
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"{flag} {text!r} gives no entry a positive weight")
    return {key: weights.get(key, 0.0) / total for key in keys}


def parse_mix(text: str) -> dict[str, float]:
    """`en=0.8,zh=0.04,...` -> language weights summing to 1; unlisted languages get 0. `cn` means `zh`."""
    return parse_weights(text, LANGUAGES, "--mix", aliases={"cn": "zh"})


def parse_kind_shares(text: str) -> dict[str, float]:
    """`color=1,shape=1,yes_no=1` -> question-kind shares of stage 2, summing to 1."""
    return parse_weights(text, QUESTION_KINDS, "--kind-shares")


def exact_shares(count: int, weights: dict[str, float], rng: random.Random) -> list[str]:
    """`count` keys of `weights`, exactly `round(count * weight)` of each (largest remainder), shuffled.

    Weights need not sum to 1. Ties between remainders go to the key listed first.
    """
    total = sum(weights.values())
    keys = list(weights)
    exact = {key: count * weights[key] / total for key in keys}
    counts = {key: int(value) for key, value in exact.items()}
    by_remainder = sorted(keys, key=lambda key: (-(exact[key] - counts[key]), keys.index(key)))
    for key in by_remainder[: count - sum(counts.values())]:
        counts[key] += 1
    drawn = [key for key in keys for _ in range(counts[key])]
    rng.shuffle(drawn)
    return drawn


def assign_languages(count: int, mix: dict[str, float], rng: random.Random) -> list[str]:
    """Exactly `round(count * weight)` items per language (largest remainder), in shuffled order."""
    return exact_shares(count, {lang: mix.get(lang, 0.0) for lang in LANGUAGES}, rng)


def draw_cycling(population: list, count: int, rng: random.Random) -> list:
    """`count` elements: shuffled passes over the population, without repeats inside a pass."""
    drawn: list = []
    while len(drawn) < count:
        order = list(population)
        rng.shuffle(order)
        drawn.extend(order[: count - len(drawn)])
    return drawn


def mcq_options(kind: str, answer: str, rng: random.Random) -> list[str]:
    """English keys of the options, in display order: 4 shuffled for colour/shape; yes/no as the benchmark lays them out."""
    if kind == "color":
        options = [answer, *rng.sample([c for c in COLORS if c != answer], 3)]
    elif kind == "shape":
        options = [*SHAPES, DISTRACTOR_SHAPE]
    else:
        return [YES, NO]
    rng.shuffle(options)
    return options


class Question(NamedTuple):
    """A question about one image: its template, the slot words it is asked with, its English answer."""

    template: Template
    color: str | None
    shape: str | None
    answer: str


def draw_question(
    table: TranslationTable,
    kind: str,
    color: str,
    shape: str,
    rng: random.Random,
    wanted: str | None = None,
    negated: bool | None = None,
) -> Question:
    """A random question of `kind` (color | shape | yes_no) about an image showing a `color` `shape`.

    Colour and shape questions name the image's own other attribute where the template takes one.
    A yes/no question is asked about the colour or the shape, negated or not (any template when
    `negated` is None), so that its answer is `wanted` (drawn Yes or No with equal odds when None).
    """
    if kind != "yes_no":
        template = rng.choice(table.templates_of_kind(kind))
        slot_color = color if "color" in template.slots else None
        slot_shape = shape if "shape" in template.slots else None
        return Question(template, slot_color, slot_shape, template.answer(color, shape, slot_color, slot_shape))
    wanted = wanted or rng.choice((YES, NO))
    templates = table.templates_of_kind("exists_color") + table.templates_of_kind("exists_shape")
    template = rng.choice([t for t in templates if negated is None or t.negated == negated])
    present = (wanted == YES) != template.negated
    slot_color = slot_shape = None
    if template.kind == "exists_color":
        slot_color = color if present else rng.choice([c for c in COLORS if c != color])
    else:
        slot_shape = shape if present else rng.choice([s for s in SHAPES if s != shape])
    return Question(template, slot_color, slot_shape, template.answer(color, shape, slot_color, slot_shape))


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


def build_stage1(
    table: TranslationTable, image_ids: list[int], languages: list[str], attributes: dict[int, tuple[str, str]]
) -> list[dict]:
    """One `plain`-template caption per image: human turn is just `<image>`, gpt turn the caption."""
    items = []
    for number, (image_id, lang) in enumerate(tqdm(list(zip(image_ids, languages)), desc="stage-1 captions")):
        caption = table.caption(lang, *attributes[image_id])
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
    table: TranslationTable,
    attributes: dict[int, tuple[str, str]],
    count: int,
    mcq_fraction: float,
    kind_shares: dict[str, float],
    rng: random.Random,
) -> list[InstructSpec]:
    """`count` questions about train images (`attributes`: image id -> (colour, shape)).

    Exactly `kind_shares` of them ask the colour, the shape, or a yes/no question (half Yes, half
    No), and a `mcq_fraction` share of each kind are multiple choice: four shuffled options for
    colour and shape, Yes/No in the benchmark's layout (A = Yes, B = No).
    """
    images = draw_cycling(sorted(attributes), count, rng)
    kinds = exact_shares(count, kind_shares, rng)
    specs = []
    for image_id, kind in zip(images, kinds):
        color, shape = attributes[image_id]
        question = draw_question(table, kind, color, shape, rng)
        options = tuple(mcq_options(kind, question.answer, rng)) if rng.random() < mcq_fraction else None
        specs.append(InstructSpec(image_id, question.template, question.color, question.shape, question.answer, options))
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
