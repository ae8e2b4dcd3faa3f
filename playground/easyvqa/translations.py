"""The reviewed six-language table of easy-VQA strings (`translations.json`) and how to render it.

A template is one easy-VQA question form (24 of them, 8 negated) with its translation in every
language. Placeholders name a form of the colour or shape word: `{color.adj}`, `{shape.gen}`, ...;
`{color.agree}` picks the colour form named by the shape's grammatical gender. Rendering
capitalises the first letter (Turkish-aware: i -> İ).

Language codes are `en zh pt ar tr ru`; benchmark file names spell Chinese `cn` (`benchmark_code`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("translations.json")
LANGUAGES: tuple[str, ...] = ("en", "zh", "pt", "ar", "tr", "ru")
COLORS: tuple[str, ...] = ("red", "green", "blue", "black", "gray", "yellow", "teal", "brown")
SHAPES: tuple[str, ...] = ("circle", "rectangle", "triangle")
DISTRACTOR_SHAPE = "star"  # never in an image: the fourth option of 4-option shape questions
YES, NO = "yes", "no"
TEMPLATE_KINDS = ("color", "shape", "exists_color", "exists_shape")

_PLACEHOLDER = re.compile(r"\{(color|shape)\.(\w+)\}")


class TranslationTableError(ValueError):
    """The table file is incomplete or a placeholder names a form that does not exist."""


@dataclass(frozen=True)
class Template:
    """One question form: `kind` says what it asks, `negated` flips the yes/no answer."""

    id: str
    kind: str  # color | shape | exists_color | exists_shape
    negated: bool
    text: dict[str, str]  # language -> template with placeholders

    @property
    def slots(self) -> frozenset[str]:
        """Which words the template takes: a subset of {"color", "shape"}."""
        return frozenset(name for name, _ in _PLACEHOLDER.findall(self.text["en"]))

    def answer(self, color: str, shape: str, slot_color: str | None, slot_shape: str | None) -> str:
        """English answer key for an image showing a `color` `shape`, asked with these slot words."""
        if self.kind == "color":
            return color
        if self.kind == "shape":
            return shape
        present = slot_color == color if self.kind == "exists_color" else slot_shape == shape
        return YES if present != self.negated else NO


def capitalize(text: str, lang: str) -> str:
    """Upper-case the first character; Turkish dotted/dotless i keep their identity."""
    if not text:
        return text
    first = text[0]
    if lang == "tr" and first in "iı":
        upper = "İ" if first == "i" else "I"
    else:
        upper = first.upper()
    return upper + text[1:]


class TranslationTable:
    """Loaded `translations.json`: templates, vocabulary, caption and the letter instruction."""

    def __init__(self, data: dict, source: Path) -> None:
        self.source = source
        self.colors: dict[str, dict[str, dict[str, str]]] = data["colors"]
        self.shapes: dict[str, dict[str, dict[str, str]]] = data["shapes"]
        self.distractors: dict[str, dict[str, str]] = data["distractor_shapes"]
        self.yes_no: dict[str, dict[str, str]] = data["yes_no"]
        self.caption_text: dict[str, str] = data["caption"]
        self.letter_instructions: dict[str, str] = data["letter_instruction"]
        self.templates: list[Template] = [
            Template(id=t["id"], kind=t["kind"], negated=t["negated"], text={lang: t[lang] for lang in LANGUAGES})
            for t in data["templates"]
        ]
        self._by_id = {t.id: t for t in self.templates}
        self._english_patterns = [(_english_pattern(t.text["en"]), t) for t in self.templates]

    def template(self, template_id: str) -> Template:
        return self._by_id[template_id]

    def templates_of_kind(self, kind: str) -> list[Template]:
        return [t for t in self.templates if t.kind == kind]

    def fill(self, text: str, lang: str, color: str | None = None, shape: str | None = None) -> str:
        """Replace the placeholders of `text` and capitalise it; errors name the missing form."""

        def replace(match: re.Match) -> str:
            slot, form = match.groups()
            word = color if slot == "color" else shape
            if word is None:
                raise TranslationTableError(f"{text!r} needs a {slot}; pass {slot}=...")
            entry = self.colors[word][lang] if slot == "color" else self.shapes[word][lang]
            if form == "agree":
                if shape is None or "gender" not in self.shapes[shape][lang]:
                    raise TranslationTableError(f"{{color.agree}} in {lang} needs a shape with a 'gender' in {self.source}")
                form = self.shapes[shape][lang]["gender"]
            if form not in entry:
                raise TranslationTableError(f"{self.source}: {slot} {word!r} has no {lang} form {form!r} (used by {text!r})")
            return entry[form]

        return capitalize(_PLACEHOLDER.sub(replace, text), lang)

    def question(self, template: Template, lang: str, color: str | None = None, shape: str | None = None) -> str:
        return self.fill(template.text[lang], lang, color=color, shape=shape)

    def caption(self, lang: str, color: str, shape: str) -> str:
        """Stage-1 caption, e.g. "Red circle." / "Красный круг." / "دائرة حمراء."."""
        return self.fill(self.caption_text[lang], lang, color=color, shape=shape)

    def answer(self, key: str, lang: str) -> str:
        """Answer word for an English key (a colour, a shape, `star`, `yes` or `no`), capitalised."""
        if key in self.colors:
            word = self.colors[key][lang]["answer"]
        elif key in self.shapes:
            word = self.shapes[key][lang]["answer"]
        elif key in self.distractors:
            word = self.distractors[key][lang]
        elif key in self.yes_no:
            word = self.yes_no[key][lang]
        else:
            raise TranslationTableError(f"no answer word for {key!r} in {self.source}")
        return capitalize(word, lang)

    def answer_vocabulary(self, lang: str) -> dict[str, str]:
        """English key -> answer word in `lang` for all 13 easy-VQA answers and the distractor."""
        keys = [*COLORS, *SHAPES, DISTRACTOR_SHAPE, YES, NO]
        return {key: self.answer(key, lang) for key in keys}

    def letter_instruction(self, lang: str) -> str:
        return self.letter_instructions[lang]

    def match_english(self, question: str) -> tuple[Template, str | None, str | None]:
        """Parse an easy-VQA question ("is there not a red shape?") into (template, colour, shape)."""
        for pattern, template in self._english_patterns:
            found = pattern.fullmatch(question.strip().lower())
            if found:
                return template, found.groupdict().get("color"), found.groupdict().get("shape")
        raise TranslationTableError(f"easy-VQA question {question!r} matches no template in {self.source}")


def _english_pattern(template: str) -> re.Pattern:
    pieces, position = [], 0
    for match in _PLACEHOLDER.finditer(template):
        pieces.append(re.escape(template[position : match.start()]))
        words = COLORS if match.group(1) == "color" else SHAPES
        pieces.append(f"(?P<{match.group(1)}>{'|'.join(words)})")
        position = match.end()
    pieces.append(re.escape(template[position:]))
    return re.compile("".join(pieces))


def format_mcq_prompt(table: TranslationTable, question: str, options: list[str], lang: str) -> str:
    """LLaVA's MMBench prompt: the question, one "A. option" line per option, then the instruction."""
    lines = [question]
    lines += [f"{chr(ord('A') + i)}. {option}" for i, option in enumerate(options)]
    lines.append(table.letter_instruction(lang))
    return "\n".join(lines)


def benchmark_code(lang: str) -> str:
    """Language code as VLMEvalKit file names spell it (`zh` -> `cn`)."""
    return "cn" if lang == "zh" else lang


@lru_cache(maxsize=4)
def load_table(path: str | Path = TABLE_PATH) -> TranslationTable:
    """Read and check the table: every entry has every language, every template renders."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise TranslationTableError(f"cannot read the translation table {path}: {err}") from err
    table = TranslationTable(data, path)
    _check_complete(table, data)
    return table


def _check_complete(table: TranslationTable, data: dict) -> None:
    missing = [
        f"{section}.{key}"
        for section in ("colors", "shapes", "distractor_shapes", "yes_no")
        for key, entry in data[section].items()
        if set(entry) != set(LANGUAGES)
    ]
    missing += [f"templates.{t['id']}" for t in data["templates"] if not set(LANGUAGES) <= set(t)]
    missing += [s for s in ("caption", "letter_instruction") if set(data[s]) != set(LANGUAGES)]
    if set(data["colors"]) != set(COLORS) or set(data["shapes"]) != set(SHAPES):
        missing.append("colors/shapes (must be exactly the easy-VQA vocabulary)")
    bad_kinds = [t.id for t in table.templates if t.kind not in TEMPLATE_KINDS]
    if missing or bad_kinds:
        raise TranslationTableError(f"{table.source}: incomplete entries {missing}, unknown kinds {bad_kinds}")
