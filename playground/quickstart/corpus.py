"""Stage 0's text: synthetic six-language documents about easy-VQA scenes, in the later stages' layout.

A pretrained LLM brings to LLaVA training the skills our random-init toy LLM lacks: reading a
description, answering in the question's language, finding the option that matches and naming its
letter, comparing a word with what was described (negation included). This module writes text
that teaches them, from the same translation table as the easy-VQA data:

- a *scene* is a caption of a coloured shape ("Red circle.", "Красный круг.") in any language; it
  stands where the image will stand in stages 1 and 2 (the `<image>` marker of the template);
- *caption* documents are stage 1's `plain` layout with a scene in place of the image: scene,
  then a caption in a (possibly other) language. They teach captions and how the colour and shape
  words of the six languages correspond;
- *chat* documents are stage 2's ChatML layout: a system turn, then user/assistant turns about the
  scene, asked in one language and answered in it: free-form (an answer word), multiple choice (a
  letter; 2..`max_options` options, several option layouts, the benchmark's "A. word" most often)
  and yes/no (a word or a letter; negated templates included). Some multiple-choice turns carry no
  letter instruction and are answered with the option's word: copying the matching option is then
  useful by itself, which is how the model starts attending to the option that matches; naming
  that option's letter is then one step away.

Every token of a document is trained on (language modelling). The answers (with the token that
ends them, as stages 1 and 2 supervise them) are also recorded as spans, so a probe can score each
skill and language on held-out documents (`Span`).

A document is a list of chunks, each tokenized on its own and concatenated: the scene is one chunk,
so the text around it tokenizes exactly as it does around the image sentinel in stages 1 and 2.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from llava.constants import DEFAULT_IMAGE_TOKEN
from llava.conversation import get_conv_template
from playground.easyvqa.probes import MCQ_SKILLS, SKILLS, probe_turn
from playground.easyvqa.training import QUESTION_KINDS, draw_question
from playground.easyvqa.translations import (
    COLORS,
    DISTRACTOR_SHAPE,
    LANGUAGES,
    NO,
    SHAPES,
    YES,
    TranslationTable,
)

LETTERS = "ABCDEF"
# How an option line can look; the first is the benchmark's (and LLaVA's MMBench prompt's).
OPTION_LAYOUTS: tuple[str, ...] = ("{letter}. {word}", "{letter}) {word}", "({letter}) {word}", "{letter}: {word}")
CHAT_TEMPLATE = "qwen_2"  # stage 2's --version


@dataclass(frozen=True)
class Span:
    """Tokens `start:end` of a document are the answer of one `skill` in `lang`."""

    start: int
    end: int
    skill: str
    lang: str


@dataclass
class Document:
    """Chunks of text tokenized one by one; `answers[i]` names the skill of chunk i when it is an answer."""

    chunks: list[str] = field(default_factory=list)
    answers: list[tuple[str, str] | None] = field(default_factory=list)

    def add(self, text: str, answer: tuple[str, str] | None = None) -> None:
        self.chunks.append(text)
        self.answers.append(answer)


@dataclass(frozen=True)
class CorpusShape:
    """What the documents look like at one point of the curriculum."""

    max_options: int = 4  # colour MCQs get 2..max_options options (shape MCQs at most 4)
    max_turns: int = 4  # question/answer turns per chat document
    caption_share: float = 0.2  # of documents; the rest are chats
    mcq_share: float = 0.5  # of chat turns; the rest are free-form
    word_reply_share: float = 0.3  # of MCQs: no letter instruction, the reply is the option's word
    negation_share: float = 0.5  # of yes/no questions: negated templates (0.5 = any template, as the test)
    benchmark_layout_share: float = 0.5  # of MCQs: "A. word" lines and Yes/No as A/B; the rest vary
    same_language_scene_share: float = 0.5  # of documents: scene in the question's language (else any)
    drill_share: float = 0.0  # of documents: yes/no drills (many comparisons with one scene)
    drill_lines: int = 8  # comparisons per drill
    yes_no_chat_share: float = 0.0  # of documents: chats whose 2..drill_lines turns all ask yes/no
    drill_chat_share: float = 0.0  # of drills: laid out as a chat (one turn per comparison) instead of lines


def encode(document: Document, tokenizer) -> tuple[list[int], list[Span]]:
    """Token ids of `document` (chunks tokenized separately) and the spans of its answers."""
    ids: list[int] = []
    spans: list[Span] = []
    for text, answer in zip(document.chunks, document.answers):
        chunk = tokenizer(text, add_special_tokens=False)["input_ids"]
        if answer is not None:
            spans.append(Span(len(ids), len(ids) + len(chunk), *answer))
        ids += chunk
    return ids, spans


class SceneTextWriter:
    """Draws stage-0 documents from `rng`; language weights `mix`, answer formats from `CorpusShape`."""

    def __init__(self, table: TranslationTable, rng: random.Random, mix: dict[str, float] | None = None) -> None:
        self.table = table
        self.rng = rng
        self.mix = mix or {lang: 1.0 for lang in LANGUAGES}
        self._languages = list(self.mix)
        self._weights = [self.mix[lang] for lang in self._languages]

    def language(self) -> str:
        return self.rng.choices(self._languages, self._weights)[0]

    def scene(self) -> tuple[str, str]:
        return self.rng.choice(COLORS), self.rng.choice(SHAPES)

    def scene_language(self, lang: str, shape: CorpusShape) -> str:
        return lang if self.rng.random() < shape.same_language_scene_share else self.rng.choice(LANGUAGES)

    def document(self, shape: CorpusShape) -> Document:
        """One document: a caption with probability `caption_share`, else a chat."""
        color, shape_name = self.scene()
        lang = self.language()
        scene_lang = self.scene_language(lang, shape)
        draw = self.rng.random()
        if draw < shape.drill_share:
            return self.drill_document(color, shape_name, lang, scene_lang, shape)
        if draw < shape.drill_share + shape.caption_share:
            return self.caption_document(color, shape_name, lang, scene_lang)
        if shape.yes_no_chat_share and draw < shape.drill_share + shape.caption_share + shape.yes_no_chat_share:
            turns = [self.turn(color, shape_name, lang, shape, kind="yes_no") for _ in range(self.rng.randint(2, shape.drill_lines))]
            return self.chat_document(color, shape_name, lang, scene_lang, turns)
        turns = self.rng.randint(1, shape.max_turns)
        return self.chat_document(color, shape_name, lang, scene_lang, [self.turn(color, shape_name, lang, shape) for _ in range(turns)])

    def caption_document(self, color: str, shape: str, lang: str, scene_lang: str) -> Document:
        """Stage 1's `plain` layout: the scene where the image goes, then the caption and a newline."""
        document = Document()
        document.add(self.table.caption(scene_lang, color, shape))
        document.add(self.table.caption(lang, color, shape) + "\n", ("caption", lang))
        return document

    def drill_document(self, color: str, shape: str, lang: str, scene_lang: str, corpus: CorpusShape) -> Document:
        """A scene, then `drill_lines` yes/no comparisons with it, one per line, each answer supervised.

        A chat turn spends some sixty tokens on one yes/no answer; a drill spends about eight. Lines
        are, at random: the bare word ("Red?" in its citation form, the caption's own word), a
        test-style question answered with a word (negated with the shape's `negation_share`), or the
        same question with Yes/No options answered with a letter. Whether the word is the scene's
        own is drawn half and half, so that only the comparison predicts the answer.
        """
        as_chat = bool(corpus.drill_chat_share) and self.rng.random() < corpus.drill_chat_share
        lines = [self.drill_line(color, shape, lang, corpus, as_chat) for _ in range(corpus.drill_lines)]
        if as_chat:
            return self.chat_document(color, shape, lang, scene_lang, [(prompt, reply, "yes/no drill") for prompt, reply in lines])
        document = Document()
        document.add(self.table.caption(scene_lang, color, shape) + "\n")
        for prompt, reply in lines:
            document.add(prompt + " ")
            document.add(reply + "\n", ("yes/no drill", lang))
        return document

    def drill_line(self, color: str, shape: str, lang: str, corpus: CorpusShape, as_chat: bool) -> tuple[str, str]:
        """One comparison of a drill: (prompt, reply). In a chat, options go one per line with the letter instruction."""
        wanted = self.rng.choice((YES, NO))
        form = self.rng.random()
        if form < 1 / 3:
            attribute = self.rng.choice(("color", "shape"))
            own = color if attribute == "color" else shape
            pool = COLORS if attribute == "color" else SHAPES
            word = own if wanted == YES else self.rng.choice([key for key in pool if key != own])
            return f"{self.table.answer(word, lang)}?", self.table.answer(wanted, lang)
        negated = self.rng.random() < corpus.negation_share
        question = draw_question(self.table, "yes_no", color, shape, self.rng, wanted=wanted, negated=negated)
        text = self.table.question(question.template, lang, color=question.color, shape=question.shape)
        if form < 2 / 3:
            return text, self.table.answer(question.answer, lang)
        keys = self.options("yes_no", question.answer, corpus)
        layout = OPTION_LAYOUTS[0] if self.rng.random() < corpus.benchmark_layout_share else self.rng.choice(OPTION_LAYOUTS)
        if as_chat:
            return self.mcq_prompt(text, keys, lang, layout), LETTERS[keys.index(question.answer)]
        options = (layout.format(letter=LETTERS[i], word=self.table.answer(key, lang)) for i, key in enumerate(keys))
        return " ".join([text, *options]), LETTERS[keys.index(question.answer)]

    def chat_document(
        self, color: str, shape: str, lang: str, scene_lang: str, turns: list[tuple[str, str, str]]
    ) -> Document:
        """Stage 2's ChatML layout with the scene where the image goes; `turns` are (prompt, answer, skill)."""
        conv = get_conv_template(CHAT_TEMPLATE)
        for number, (prompt, answer, _) in enumerate(turns):
            conv.append_message(conv.roles[0], f"{DEFAULT_IMAGE_TOKEN}\n{prompt}" if number == 0 else prompt)
            conv.append_message(conv.roles[1], answer)
        skills = iter(skill for _, _, skill in turns)
        document = Document()
        for text, supervised in conv.render_pieces():
            if DEFAULT_IMAGE_TOKEN in text:
                before, after = text.split(DEFAULT_IMAGE_TOKEN)
                document.add(before)
                document.add(self.table.caption(scene_lang, color, shape))
                document.add(after)
            elif supervised:
                document.add(text, (next(skills), lang))
            else:
                document.add(text)
        return document

    def turn(self, color: str, shape: str, lang: str, corpus: CorpusShape, kind: str | None = None) -> tuple[str, str, str]:
        """One (prompt, answer, skill) about a `color` `shape`, asked in `lang`."""
        kind = kind or self.rng.choice(QUESTION_KINDS)
        negated = self.rng.random() < corpus.negation_share if kind == "yes_no" else None
        question = draw_question(self.table, kind, color, shape, self.rng, negated=negated)
        text = self.table.question(question.template, lang, color=question.color, shape=question.shape)
        if self.rng.random() >= corpus.mcq_share:
            return text, self.table.answer(question.answer, lang), "free-form"
        keys = self.options(kind, question.answer, corpus)
        benchmark = self.rng.random() < corpus.benchmark_layout_share
        layout = OPTION_LAYOUTS[0] if benchmark else self.rng.choice(OPTION_LAYOUTS)
        if self.rng.random() < corpus.word_reply_share:
            return self.mcq_prompt(text, keys, lang, layout, instruction=False), self.table.answer(question.answer, lang), "free-form"
        return self.mcq_prompt(text, keys, lang, layout), LETTERS[keys.index(question.answer)], MCQ_SKILLS[kind]

    def options(self, kind: str, answer: str, corpus: CorpusShape) -> list[str]:
        """English keys of 2..`max_options` options (yes/no: the benchmark's order, or swapped)."""
        if kind == "yes_no":
            keys = [YES, NO]
            return keys if self.rng.random() < corpus.benchmark_layout_share else keys[::-1]
        pool = [c for c in COLORS if c != answer] if kind == "color" else [s for s in (*SHAPES, DISTRACTOR_SHAPE) if s != answer]
        count = self.rng.randint(2, min(corpus.max_options, len(pool) + 1))
        keys = [answer, *self.rng.sample(pool, count - 1)]
        self.rng.shuffle(keys)
        return keys

    def mcq_prompt(self, question: str, keys: list[str], lang: str, layout: str, instruction: bool = True) -> str:
        """The question, one line per option and (unless `instruction` is False) the letter instruction."""
        lines = [question]
        lines += [layout.format(letter=LETTERS[i], word=self.table.answer(key, lang)) for i, key in enumerate(keys)]
        if instruction:
            lines.append(self.table.letter_instruction(lang))
        return "\n".join(lines)


def probe_documents(table: TranslationTable, per_skill: int, seed: int) -> list[Document]:
    """Held-out single-answer documents in the test's format: `per_skill` per (language, skill).

    The turns are the probe set's (`playground.easyvqa.probes.probe_turn`: four options "A. word",
    Yes/No as A/B); scenes are in the question's language half of the time. Drawn from their own
    seed, so they are not the training stream's documents (though, in a world of 24 scenes, a
    text can repeat).
    """
    rng = random.Random(f"{seed}/stage0-probe")
    writer = SceneTextWriter(table, rng)
    documents = []
    for lang in LANGUAGES:
        for skill in SKILLS:
            for _ in range(per_skill):
                color, shape = writer.scene()
                scene_lang = writer.scene_language(lang, CorpusShape())
                prompt, reply = probe_turn(table, skill, lang, color, shape, rng)
                if skill == "caption":
                    documents.append(writer.caption_document(color, shape, lang, scene_lang))
                else:
                    documents.append(writer.chat_document(color, shape, lang, scene_lang, [(prompt, reply, skill)]))
    return documents


def corpus_texts(table: TranslationTable, count: int, seed: int) -> list[str]:
    """`count` documents as plain text (chunks joined), for training the toy tokenizer."""
    writer = SceneTextWriter(table, random.Random(f"{seed}/tokenizer-corpus"))
    return ["".join(writer.document(CorpusShape(max_options=6)).chunks) for _ in range(count)]

