"""LLaVA-style open QA (`model_vqa_loader`): question JSONL in, answers JSONL out, batched and resumable."""

import json

import pytest
from PIL import Image

from llava.eval.generation import load_model
from llava.eval.model_vqa_loader import main, read_questions, run_open_qa


def write_questions(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (12, 10), (200, 20, 20)).save(images / "red.png")
    Image.new("RGB", (12, 10), (20, 20, 200)).save(images / "blue.png")
    lines = [
        json.dumps({"question_id": 1, "image": "red.png", "text": "What colour is this?"}),
        json.dumps({"question_id": "q2", "image": "blue.png", "text": "Describe the image."}),
        "{not json",
        json.dumps({"question_id": 4, "text": "Say hello."}),
        json.dumps({"question_id": 5, "image": "missing.png", "text": "What is it?"}),
    ]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return questions, images


def test_bad_question_line_is_reported_with_its_number_and_skipped(tmp_path, caplog):
    questions, _ = write_questions(tmp_path)
    assert [q.question_id for q in read_questions(questions)] == [1, "q2", 4, 5]
    assert "questions.jsonl line 3: skipped" in caplog.text


def test_answers_every_question_once_and_resumes(tiny_llava_checkpoint, tmp_path):
    questions, images = write_questions(tmp_path)
    answers = tmp_path / "answers.jsonl"
    model = load_model(str(tiny_llava_checkpoint), device="cpu", max_new_tokens=3)
    assert run_open_qa(questions, answers, lambda: model, image_folder=images, batch_size=2) == 4
    records = [json.loads(line) for line in answers.read_text(encoding="utf-8").splitlines()]
    assert sorted(map(str, (r["question_id"] for r in records))) == ["1", "4", "5", "q2"]
    assert set(records[0]) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
    missing = next(r for r in records if r["question_id"] == 5)
    assert missing["text"] == "" and "missing.png" in missing["metadata"]["error"]
    answers.write_text("\n".join(json.dumps(r) for r in records[:2]) + "\n", encoding="utf-8")
    assert run_open_qa(questions, answers, lambda: model, image_folder=images, batch_size=2) == 2
    again = [json.loads(line)["question_id"] for line in answers.read_text(encoding="utf-8").splitlines()]
    assert sorted(map(str, again)) == ["1", "4", "5", "q2"]


def test_beam_search_is_refused_naming_the_flag(tmp_path, capsys):
    argv = [
        "--model-path",
        str(tmp_path),
        "--question-file",
        "q.jsonl",
        "--answers-file",
        "a.jsonl",
        "--num_beams",
        "4",
    ]
    assert main(argv) == 2
    assert "--num_beams must be 1" in capsys.readouterr().err


def test_missing_question_file_stops_with_its_name(tmp_path, capsys):
    argv = [
        "--model-path",
        str(tmp_path),
        "--question-file",
        str(tmp_path / "q.jsonl"),
        "--answers-file",
        "a.jsonl",
    ]
    assert main(argv) == 2
    assert "q.jsonl does not exist" in capsys.readouterr().err


def test_finished_answers_file_is_refused_unless_overwrite(tiny_llava_checkpoint, tmp_path):
    from llava.output_dir import FinishedRunError

    questions, images = write_questions(tmp_path)
    answers = tmp_path / "answers.jsonl"
    model = load_model(str(tiny_llava_checkpoint), device="cpu", max_new_tokens=3)
    assert run_open_qa(questions, answers, lambda: model, image_folder=images, batch_size=2) == 4
    first = answers.read_text(encoding="utf-8")
    with pytest.raises(FinishedRunError, match="--overwrite_output_dir") as refusal:
        run_open_qa(questions, answers, lambda: model, image_folder=images, batch_size=2)
    assert "answers.jsonl" in str(refusal.value) and answers.read_text(encoding="utf-8") == first
    assert run_open_qa(questions, answers, lambda: model, image_folder=images, batch_size=2, overwrite=True) == 4
    ids = [json.loads(line)["answer_id"] for line in answers.read_text(encoding="utf-8").splitlines()]
    assert len(ids) == 4 and not set(ids) & {json.loads(line)["answer_id"] for line in first.splitlines()}
