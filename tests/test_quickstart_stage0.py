"""Stage 0 of the quickstart: the synthetic text, the toy tokenizer, the pretraining command and
the committed pretrained LLM it starts from."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llava.conversation import get_conv_template
from playground.easyvqa.probes import SKILLS
from playground.easyvqa.translations import COLORS, LANGUAGES, SHAPES, YES, load_table
from playground.quickstart.corpus import CorpusShape, SceneTextWriter, encode, probe_documents
from playground.quickstart.curves import answer_is_right
from playground.quickstart.pretrain_llm import corpus_shape, length_sorted_microbatches, main
from playground.quickstart.settings import PRETRAINED_LLM, PretrainSettings

COMMITTED_SIZE_LIMIT = 6 * 2**20


@pytest.fixture(scope="module")
def toy_tokenizer():
    return AutoTokenizer.from_pretrained(PRETRAINED_LLM)


def test_a_chat_document_is_stage_2_text_with_the_scene_where_the_image_goes():
    table = load_table()
    writer = SceneTextWriter(table, random.Random(0))
    turns = [("Is there a red shape?", "Yes", "free-form"), ("What color is the shape?\nA. Red\nB. Blue", "A", "colour MCQ")]
    document = writer.chat_document("red", "circle", "en", "ru", turns)
    conv = get_conv_template("qwen_2")
    conv.append_message(conv.roles[0], f"<image>\n{turns[0][0]}")
    conv.append_message(conv.roles[1], turns[0][1])
    conv.append_message(conv.roles[0], turns[1][0])
    conv.append_message(conv.roles[1], turns[1][1])
    scene = table.caption("ru", "red", "circle")
    assert "".join(document.chunks) == conv.get_prompt().replace("<image>", scene)
    assert document.chunks.count(scene) == 1
    assert [(text, answer) for text, answer in zip(document.chunks, document.answers) if answer] == [
        ("Yes<|im_end|>", ("free-form", "en")), ("A<|im_end|>", ("colour MCQ", "en"))
    ]


def test_a_caption_document_is_the_plain_layout_with_a_scene_for_the_image():
    table = load_table()
    document = SceneTextWriter(table, random.Random(0)).caption_document("blue", "triangle", "tr", "zh")
    assert document.chunks == [table.caption("zh", "blue", "triangle"), table.caption("tr", "blue", "triangle") + "\n"]
    assert document.answers == [None, ("caption", "tr")]


def test_multiple_choice_answers_name_the_option_that_matches_the_scene():
    table = load_table()
    writer = SceneTextWriter(table, random.Random(1))
    shape = CorpusShape(max_options=5, mcq_share=1.0, word_reply_share=0.0)  # every turn answers with a letter
    for _ in range(200):
        color, shape_name = writer.scene()
        prompt, letter, skill = writer.turn(color, shape_name, "pt", shape)
        options = dict(line.replace("(", "").replace(")", ".").replace(":", ".").split(". ", 1)
                       for line in prompt.split("\n")[1:-1])
        if skill == "colour MCQ":
            assert options[letter] == table.answer(color, "pt")
        elif skill == "shape MCQ":
            assert options[letter] == table.answer(shape_name, "pt")
        else:
            assert skill == "yes/no MCQ"
            assert options[letter] in (table.answer("yes", "pt"), table.answer("no", "pt"))


def test_the_curriculum_starts_small_and_reaches_the_full_shape():
    settings = PretrainSettings(steps=1000, curriculum_fraction=0.3, max_options=5, max_turns=4)
    first, full = corpus_shape(settings, 0), corpus_shape(settings, 300)
    assert (first.max_options, first.max_turns, first.same_language_scene_share) == (2, 1, 1.0)
    assert (full.max_options, full.max_turns) == (5, 4)
    assert full.same_language_scene_share == settings.same_language_scene_share
    assert corpus_shape(settings, 999) == dataclasses.replace(full, negation_share=0.5)  # only negation still grew


def test_negated_yes_no_questions_appear_only_after_the_plain_comparison_has_had_its_steps():
    settings = PretrainSettings(steps=1000, negation_from=0.4, negation_full=0.7)
    assert [corpus_shape(settings, step).negation_share for step in (0, 399, 400)] == [0.0, 0.0, 0.0]
    assert 0.0 < corpus_shape(settings, 550).negation_share < 0.5
    assert corpus_shape(settings, 700).negation_share == corpus_shape(settings, 999).negation_share == 0.5


def test_length_sorted_microbatches_keep_every_document_once_within_the_padded_budget():
    lengths = [5, 7, 3, 9, 4, 6, 2, 8, 5, 5, 30] * 3
    documents = [([i] * length, [1.0] * length) for i, length in enumerate(lengths)]
    batches = length_sorted_microbatches(documents, padded_tokens=24)
    assert sorted(i for batch in batches for ids, _ in batch for i in set(ids)) == list(range(len(lengths)))
    for batch in batches:
        widest = max(len(ids) for ids, _ in batch)
        assert len(batch) == 1 or widest * len(batch) <= 24  # a document longer than the budget rides alone
    flat = [len(ids) for batch in batches for ids, _ in batch]
    assert flat == sorted(flat)


def test_probe_documents_hold_one_answer_per_skill_and_language(toy_tokenizer):
    documents = probe_documents(load_table(), per_skill=2, seed=0)
    spans = [span for document in documents for span in encode(document, toy_tokenizer)[1]]
    counts = {(skill, lang): 0 for skill in SKILLS for lang in LANGUAGES}
    for span in spans:
        counts[(span.skill, span.lang)] += 1
    assert set(counts.values()) == {2}


def test_an_answer_is_right_only_when_every_token_is_predicted():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0]])
    assert answer_is_right(logits, torch.tensor([1, 0]))
    assert not answer_is_right(logits, torch.tensor([1, 2]))
    assert answer_is_right(logits, torch.tensor([2, 0]), first_choices=torch.tensor([0, 2]))


def test_the_toy_tokenizer_keeps_every_answer_word_one_token(toy_tokenizer):
    table = load_table()
    for lang in LANGUAGES:
        for key in (*COLORS, *SHAPES, YES, "no"):
            word = table.answer(key, lang)
            as_reply = toy_tokenizer(word, add_special_tokens=False)["input_ids"]
            in_option = toy_tokenizer(f"A. {word}", add_special_tokens=False)["input_ids"]
            assert len(as_reply) == 1, (lang, word, as_reply)
            assert toy_tokenizer.decode(in_option[-1:]).strip() == word, (lang, word, in_option)


def test_the_toy_tokenizer_encodes_any_text_and_decodes_it_back(toy_tokenizer):
    text = "Hello, wörld! 这是新的 текст 123 ✓"
    assert toy_tokenizer.decode(toy_tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert toy_tokenizer.eos_token == "<|im_end|>" and toy_tokenizer.pad_token == "<|endoftext|>"


def test_the_committed_pretrained_llm_is_small_loads_and_records_how_it_was_made():
    weights = PRETRAINED_LLM / "model.safetensors"
    assert weights.stat().st_size < COMMITTED_SIZE_LIMIT
    record = json.loads((PRETRAINED_LLM / "pretrain.json").read_text(encoding="utf-8"))
    assert record["command"].startswith("python -m playground.quickstart.pretrain_llm")
    model = AutoModelForCausalLM.from_pretrained(PRETRAINED_LLM)
    assert model.config.hidden_size == record["settings"]["hidden_size"]
    assert model.config.vocab_size == len(AutoTokenizer.from_pretrained(PRETRAINED_LLM))
    with (PRETRAINED_LLM / "curves.csv").open(encoding="utf-8", newline="") as handle:
        final_step = max(int(row["step"]) for row in csv.DictReader(handle))
    assert final_step == record["settings"]["steps"]


def test_pretrain_command_trains_a_few_steps_into_a_loadable_llm(tmp_path):
    out = tmp_path / "llm"
    argv = ["--out", str(out), "--steps", "3", "--probe-every", "2", "--probe-per-skill", "1",
            "--tokenizer-documents", "300", "--hidden-size", "32", "--intermediate-size", "64", "--layers", "1",
            "--heads", "2", "--kv-heads", "2", "--step-tokens", "256", "--microbatch-tokens", "128", "--seed", "3"]
    assert main(argv) == 0
    record = json.loads((out / "pretrain.json").read_text(encoding="utf-8"))
    assert record["settings"]["seed"] == 3 and record["command"].endswith(" ".join(argv))
    with (out / "curves.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted({int(row["step"]) for row in rows}) == [0, 2, 3]
    assert {(row["skill"], row["language"]) for row in rows} == {(s, lang) for s in SKILLS for lang in LANGUAGES}
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = tokenizer("Red circle.", return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_init_from_continues_a_run_and_keeps_its_record_and_curves(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    sizes = ["--probe-per-skill", "1", "--tokenizer-documents", "300", "--hidden-size", "32", "--intermediate-size", "64",
             "--layers", "1", "--heads", "2", "--kv-heads", "2", "--step-tokens", "256", "--microbatch-tokens", "128"]
    assert main(["--out", str(first), "--steps", "2", "--probe-every", "2", *sizes]) == 0
    argv = ["--out", str(second), "--init-from", str(first), "--steps", "2", "--probe-every", "1", "--drill-share", "0.5", *sizes]
    assert main(argv) == 0
    record = json.loads((second / "pretrain.json").read_text(encoding="utf-8"))
    assert record["settings"]["init_from"] == str(first) and record["settings"]["drill_share"] == 0.5
    assert record["continues"] == json.loads((first / "pretrain.json").read_text(encoding="utf-8"))
    with (second / "curves.csv").open(encoding="utf-8", newline="") as handle:
        assert sorted({int(row["step"]) for row in csv.DictReader(handle)}) == [0, 2, 3, 4]
    assert (second / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes()
    before = AutoModelForCausalLM.from_pretrained(first).state_dict()
    after = AutoModelForCausalLM.from_pretrained(second).state_dict()
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def test_init_from_a_folder_without_a_record_is_refused_naming_it(tmp_path, capsys):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "out"), "--init-from", str(tmp_path / "elsewhere"), "--steps", "1"])
    assert exit_info.value.code == 2
    assert "elsewhere: no pretrain.json" in capsys.readouterr().err


def test_drill_answers_are_the_comparison_of_each_line_with_the_scene():
    table = load_table()
    writer = SceneTextWriter(table, random.Random(4), {"en": 1.0})
    forms = set()
    for _ in range(60):
        color, shape_name = writer.scene()
        document = writer.drill_document(color, shape_name, "en", "ru", CorpusShape(negation_share=0.5, drill_lines=6))
        assert document.chunks[0] == table.caption("ru", color, shape_name) + "\n"
        lines = list(zip(document.chunks[1::2], document.chunks[2::2]))
        assert len(lines) == 6 and all(answer == ("yes/no drill", "en") for answer in document.answers[2::2])
        for prompt, reply in lines:
            reply = reply.removesuffix("\n")
            if prompt.endswith("? ") and prompt[:-2] in {table.answer(key, "en") for key in (*COLORS, *SHAPES)}:
                forms.add("word")
                expected = "Yes" if prompt[:-2] in (table.answer(color, "en"), table.answer(shape_name, "en")) else "No"
                assert reply == expected
                continue
            question, _, options = prompt.partition("? ")
            template, slot_color, slot_shape = table.match_english(question + "?")
            truth = table.answer(template.answer(color, shape_name, slot_color, slot_shape), "en")
            if options.strip():
                forms.add("letter")
                words = dict(re.findall(r"\(?([A-F])[.):] ?(\S+)", options))
                assert set(words.values()) == {"Yes", "No"} and words[reply] == truth, (prompt, reply)
            else:
                forms.add("question")
                assert reply == truth
    assert forms == {"word", "question", "letter"}


def test_yes_no_chats_ask_only_yes_no_questions():
    writer = SceneTextWriter(load_table(), random.Random(6))
    shape = CorpusShape(caption_share=0.0, yes_no_chat_share=1.0, drill_lines=5)
    for _ in range(30):
        skills = [answer[0] for answer in writer.document(shape).answers if answer]
        assert 2 <= len(skills) <= 5 and set(skills) <= {"yes/no MCQ", "free-form"}


def test_the_pretrain_command_is_deterministic_for_a_seed(tmp_path):
    sizes = ["--probe-per-skill", "1", "--tokenizer-documents", "300", "--hidden-size", "32", "--intermediate-size", "64",
             "--layers", "1", "--heads", "2", "--kv-heads", "2", "--step-tokens", "256", "--microbatch-tokens", "128",
             "--steps", "4", "--probe-every", "2", "--drill-share", "0.3"]
    runs = [tmp_path / "a", tmp_path / "b", tmp_path / "other-seed"]
    for out, seed in zip(runs, ("0", "0", "1")):
        assert main(["--out", str(out), "--seed", seed, *sizes]) == 0
    weights = [AutoModelForCausalLM.from_pretrained(out).state_dict() for out in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    assert (runs[0] / "tokenizer.json").read_bytes() == (runs[1] / "tokenizer.json").read_bytes()


def test_init_from_keeps_the_earlier_runs_sizes_and_refuses_a_different_one(tmp_path, capsys):
    first = tmp_path / "first"
    sizes = ["--probe-per-skill", "1", "--tokenizer-documents", "300", "--hidden-size", "32", "--intermediate-size", "64",
             "--layers", "1", "--heads", "2", "--kv-heads", "2", "--step-tokens", "256", "--microbatch-tokens", "128"]
    assert main(["--out", str(first), "--steps", "1", "--probe-every", "1", *sizes]) == 0
    second = tmp_path / "second"
    assert main(["--out", str(second), "--init-from", str(first), "--steps", "1", "--probe-every", "1",
                 "--step-tokens", "256", "--microbatch-tokens", "128", "--probe-per-skill", "1"]) == 0
    record = json.loads((second / "pretrain.json").read_text(encoding="utf-8"))
    assert (record["settings"]["hidden_size"], record["settings"]["layers"]) == (32, 1)
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "third"), "--init-from", str(first), "--steps", "1", "--hidden-size", "64"])
    assert exit_info.value.code == 2
    assert "--hidden-size 64" in capsys.readouterr().err


def test_a_drill_laid_out_as_a_chat_has_one_turn_per_comparison():
    writer = SceneTextWriter(load_table(), random.Random(8))
    document = writer.drill_document("red", "circle", "en", "en", CorpusShape(drill_lines=5, drill_chat_share=1.0))
    text = "".join(document.chunks)
    assert text.startswith("<|im_start|>system") and text.count("<|im_start|>assistant") == 5
    assert [answer for answer in document.answers if answer] == [("yes/no drill", "en")] * 5
