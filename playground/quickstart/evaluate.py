"""The quickstart's evaluation of one checkpoint: MMMB in six languages, a free-form probe, routing.

- MMMB_{en,cn,pt,ar,tr,ru}.tsv are answered and scored by `llava.eval` (the project's evaluation:
  batched generation, judge-free letter extraction, the MMMB pair rule for yes/no items and single
  scoring for colour and shape MCQs).
- The free-form probe asks the first `freeform_probes` questions of each language's MMMB file
  without their options and checks that the reply is an answer word of the question's language
  (`playground.easyvqa.translations.load_table().answer_vocabulary(lang)`), and whether it is the
  right one.
- For a `parrot_moe` checkpoint, the routing probabilities of every MMMB prompt are read with
  `parrot_moe.analysis.routing_by_language` (Fig 5c: expert share per prompt language).
"""

from __future__ import annotations

import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from llava.eval.benchmark import Benchmark, read_benchmark
from llava.eval.generation import batched
from llava.eval.run_benchmark import answer_benchmark, chunk_path, merge_chunks
from llava.eval.score import score_file
from llava.eval.scoring import Accuracy
from llava.inference import generate_batch
from llava.model.builder import load_pretrained_model
from llava.model.multimodal_projector import ROUTING_METRIC
from playground.easyvqa.translations import LANGUAGES, benchmark_code, load_table

if TYPE_CHECKING:
    from parrot_moe.diagnostics import LanguageRouting

TRAILING_PUNCTUATION = " .。!！?？,，;:"


@dataclass
class FreeformResult:
    """Free-form replies of one language: how many are answer words of that language, how many right."""

    language: str
    asked: int = 0
    in_language: int = 0
    correct: int = 0
    examples: list[tuple[str, str, str]] = field(default_factory=list)  # (question, expected, reply)

    @property
    def in_language_share(self) -> float:
        return self.in_language / self.asked if self.asked else 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.asked if self.asked else 0.0


@dataclass
class Evaluation:
    """Everything measured on one checkpoint."""

    name: str
    mmmb: dict[str, Accuracy]  # language -> accuracy (pairs for yes/no, MCQ singly)
    freeform: dict[str, FreeformResult]
    routing: dict[str, LanguageRouting] | None  # language -> what the router saw and did, None without MoE


def normalize_answer(text: str) -> str:
    """NFKC, first line, trailing punctuation removed, case-folded: how replies are compared to answer words."""
    line = unicodedata.normalize("NFKC", text).strip().split("\n")[0]
    return line.strip(TRAILING_PUNCTUATION).casefold()


def benchmark_files(data_dir: Path) -> dict[str, Path]:
    """language -> `MMMB_<code>.tsv` in `data_dir`; a missing file names the builder command."""
    files = {}
    for lang in LANGUAGES:
        path = data_dir / f"MMMB_{benchmark_code(lang)}.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; build the data with `python -m playground.easyvqa build`")
        files[lang] = path
    return files


def evaluate_mmmb(benchmark: Benchmark, generate, out_dir: Path, batch_size: int) -> Accuracy:
    """Answer every row of one MMMB file into `out_dir` and score it (pair rule)."""
    answer_benchmark(benchmark, generate, chunk_path(out_dir, benchmark.name, 1, 0), benchmark.items, batch_size=batch_size)
    merged = merge_chunks(benchmark, out_dir)
    if merged is None:
        raise RuntimeError(f"{benchmark.name}: rows are missing from {out_dir / 'chunks'} after answering them all")
    return score_file(merged, rule="pair", language=benchmark.language)


def freeform_probe(benchmark: Benchmark, language: str, generate, count: int, batch_size: int) -> FreeformResult:
    """Ask the first `count` questions of `benchmark` without options; score language and correctness."""
    vocabulary = {normalize_answer(word) for word in load_table().answer_vocabulary(language).values()}
    items = [item for item in benchmark.items if not item.issues][:count]
    result = FreeformResult(language)
    for batch in batched(items, batch_size):
        replies = generate([item.question for item in batch], [benchmark.load_image(item) for item in batch])
        for item, reply in zip(batch, replies):
            expected = item.options.get(item.answer or "", "")
            result.asked += 1
            result.in_language += normalize_answer(reply) in vocabulary
            result.correct += normalize_answer(reply) == normalize_answer(expected)
            if len(result.examples) < 3:
                result.examples.append((item.question, expected, reply))
    return result


def routing_per_language(model, tokenizer, image_processor, files: dict[str, Path], batch_size: int):
    """language -> the routing of every MMMB prompt (`parrot_moe.diagnostics.LanguageRouting`), or None
    when the projector does not route."""
    if ROUTING_METRIC not in model.mm_projector.reported_metrics:
        return None
    from parrot_moe.analysis import probes_from_tsv, routing_by_language

    probes = probes_from_tsv([str(path) for path in files.values()], max_per_lang=10**9)
    routing = routing_by_language(model, tokenizer, image_processor, probes, batch_size)
    codes = {benchmark_code(lang): lang for lang in LANGUAGES}  # analysis names Chinese as the files do
    return {codes.get(lang, lang): weights for lang, weights in routing.items()}


def evaluate_checkpoint(
    checkpoint: Path, data_dir: Path, out_dir: Path, *, batch_size: int, max_new_tokens: int, freeform_probes: int
) -> Evaluation:
    """MMMB accuracy, the free-form probe and the routing of `checkpoint`, predictions under `out_dir`."""
    shutil.rmtree(out_dir / "chunks", ignore_errors=True)  # answers of an earlier run must not be reused
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, model, image_processor, _ = load_pretrained_model(str(checkpoint))

    def generate(prompts, images):
        return generate_batch(model, tokenizer, image_processor, prompts, images, max_new_tokens=max_new_tokens)

    files = benchmark_files(data_dir)
    mmmb, freeform = {}, {}
    for lang, path in tqdm(files.items(), desc=f"evaluating {checkpoint.name}", unit="language"):
        benchmark = read_benchmark(path, language=lang)
        mmmb[lang] = evaluate_mmmb(benchmark, generate, out_dir, batch_size)
        freeform[lang] = freeform_probe(benchmark, lang, generate, freeform_probes, batch_size)
    routing = routing_per_language(model, tokenizer, image_processor, files, batch_size)
    return Evaluation(checkpoint.name, mmmb, freeform, routing)
