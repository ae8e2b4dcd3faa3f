"""LLaVA-style open question answering, batched: question JSONL in, answers JSONL out.

    python -m llava.eval.model_vqa_loader --model-path CKPT --question-file q.jsonl \\
        --image-folder images/ --answers-file answers.jsonl --batch-size 16

Same flags as upstream's `model_vqa_loader` (plus `--batch-size`, which upstream pins to 1).
Each question line holds `question_id`, `text` and optionally `image` (relative to
`--image-folder`). Each answer line holds `question_id`, `prompt`, `text`, `answer_id`,
`model_id` and `metadata`. Answers are appended after every batch; a rerun skips question ids
already in the answers file. An answers file that already answers every question of this chunk is a
finished run: it is refused unless `--overwrite_output_dir`, which answers every question afresh. A line that is not JSON, or lacks `question_id`/`text`, is reported
with its line number and skipped; a missing or unreadable image is reported and answered with an
empty `text` and the reason in `metadata.error`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from llava.eval.generation import GenerateFn, LoadedModel, batched, get_chunk, model_loader, resolve_shard
from llava.image_limits import ImageShapeError, check_image_shape
from llava.output_dir import OVERWRITE_FLAG, FinishedRunError, finished_run_error

logger = logging.getLogger(__name__)


@dataclass
class Question:
    question_id: object
    text: str
    image: str | None
    line: int


def read_questions(path: Path) -> list[Question]:
    """Questions of a JSONL file; bad lines are logged with their line number and skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"--question-file {path} does not exist")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            questions.append(
                Question(record["question_id"], str(record["text"]), record.get("image"), number)
            )
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            logger.warning("%s line %d: skipped, not a question record (%s)", path.name, number, err)
    return questions


def answered_ids(path: Path) -> set[str]:
    """Question ids already in an answers file (a torn last line is ignored)."""
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ids.add(json.dumps(json.loads(line)["question_id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return ids


def _load_image(question: Question, image_folder: Path) -> Image.Image:
    path = image_folder / str(question.image)
    try:
        with Image.open(path) as image:
            check_image_shape(image.size)  # the stricter pad rule: the model's aspect mode is not known here
            return image.convert("RGB")
    except ImageShapeError as err:
        raise ValueError(f"question {question.question_id} (line {question.line}): image {path} {err}") from err
    except (OSError, UnidentifiedImageError) as err:
        message = f"question {question.question_id} (line {question.line}): cannot read image {path} ({err})"
        raise ValueError(message) from err


def answer_questions(
    questions: list[Question],
    generate: GenerateFn,
    answers_file: Path,
    *,
    image_folder: Path,
    model_id: str,
    batch_size: int,
) -> int:
    """Answer `questions` in batches, appending JSON lines to `answers_file`; return lines written."""
    answers_file.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with answers_file.open("a", encoding="utf-8") as stream, tqdm(total=len(questions), unit="q") as progress:
        for batch in batched(questions, batch_size):
            ready, images, records = [], [], []
            for question in batch:
                try:
                    images.append(_load_image(question, image_folder) if question.image else None)
                    ready.append(question)
                except ValueError as err:
                    logger.warning("%s", err)
                    records.append(_record(question, "", model_id, {"error": str(err)}))
            answers = generate([q.text for q in ready], images) if ready else []
            records += [_record(q, answer, model_id, {}) for q, answer in zip(ready, answers)]
            stream.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            stream.flush()
            written += len(records)
            progress.update(len(batch))
    return written


def _record(question: Question, answer: str, model_id: str, metadata: dict) -> dict:
    return {
        "question_id": question.question_id,
        "prompt": question.text,
        "text": answer,
        "answer_id": uuid.uuid4().hex,
        "model_id": model_id,
        "metadata": metadata,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.eval.model_vqa_loader", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-base", default=None)
    parser.add_argument("--image-folder", type=Path, default=Path("."))
    parser.add_argument("--question-file", type=Path, required=True)
    parser.add_argument("--answers-file", type=Path, required=True)
    parser.add_argument(
        "--conv-mode", default=None, help="accepted for upstream scripts; the checkpoint's template is used"
    )
    parser.add_argument("--num-chunks", type=int, default=None)
    parser.add_argument("--chunk-idx", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top_p", "--top-p", dest="top_p", type=float, default=None)
    parser.add_argument("--num_beams", "--num-beams", dest="num_beams", type=int, default=1)
    parser.add_argument("--max_new_tokens", "--max-new-tokens", dest="max_new_tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument(
        "--overwrite_output_dir",
        "--overwrite-output-dir",
        dest="overwrite_output_dir",
        action="store_true",
        help="answer every question afresh when --answers-file already answers them all (default: refused)",
    )
    return parser


def run_open_qa(
    question_file: Path,
    answers_file: Path,
    get_model: Callable[[], LoadedModel],
    *,
    image_folder: Path,
    num_chunks: int = 1,
    chunk_idx: int = 0,
    batch_size: int = 8,
    overwrite: bool = False,
) -> int:
    """Answer this chunk's questions not yet in `answers_file`; return how many were answered.

    `get_model` is called only when some question still needs an answer. When `answers_file`
    already answers every question of the chunk, raises `FinishedRunError` unless `overwrite`
    (then the file is replaced by fresh answers).
    """
    questions = get_chunk(read_questions(question_file), num_chunks, chunk_idx)
    done = answered_ids(answers_file)
    pending = [q for q in questions if json.dumps(q.question_id) not in done]
    if questions and not pending:
        if not overwrite:
            raise finished_run_error(
                "llava.eval.model_vqa_loader", answers_file.parent, [answers_file.name], "give a new --answers-file"
            )
        logger.warning("%s: replacing %s, which answered every question", OVERWRITE_FLAG, answers_file)
        answers_file.unlink()
        pending = questions
    logger.info(
        "chunk %d of %d: %d questions, %d to answer", chunk_idx, num_chunks, len(questions), len(pending)
    )
    if not pending:
        return 0
    model = get_model()
    return answer_questions(
        pending,
        model.generate,
        answers_file,
        image_folder=image_folder,
        model_id=model.name,
        batch_size=batch_size,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.num_beams != 1:
        print("error: --num_beams must be 1: generation is batched greedy or sampling", file=sys.stderr)
        return 2
    if args.conv_mode:
        logger.info("--conv-mode %s ignored: the template saved with the checkpoint is used", args.conv_mode)
    num_chunks, chunk_idx = resolve_shard(args.num_chunks, args.chunk_idx)
    get_model = model_loader(args)
    try:
        run_open_qa(
            args.question_file,
            args.answers_file,
            get_model,
            image_folder=args.image_folder,
            num_chunks=num_chunks,
            chunk_idx=chunk_idx,
            batch_size=args.batch_size,
            overwrite=args.overwrite_output_dir,
        )
    except (FileNotFoundError, FinishedRunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
