"""Stage 0: pretrain the quickstart's tiny LLM on synthetic six-language text, ahead of time.

    python -m playground.quickstart.pretrain_llm --out playground/quickstart/pretrained_llm

LLaVA starts from a pretrained LLM; this stands in for that pretraining, as the tower pretraining
(`playground.quickstart.vision`) stands in for CLIP's. It trains the toy tokenizer
(`playground.quickstart.toy_tokenizer`), then a random-init tiny LLaMA on the stage-0 corpus
(`playground.quickstart.corpus`), every token supervised, with a curriculum (few options and one
question per document first). Every `probe_every` steps it scores held-out documents per skill and
language. `--out` receives a standard Hugging Face causal-LM folder (safetensors + tokenizer) and,
beside it, `pretrain.json` (command, seed, settings, wall time, final probe), `curves.csv` and
`curves.png`. The run is a function of the seed and the settings (CPU, float32).

`--init-from DIR` continues an earlier run instead (its tokenizer, sizes and weights; a new optimizer
and schedule): the curves go on from its last step and its `pretrain.json` is kept inside the new one,
so the chain of commands behind a checkpoint travels with it.

The quickstart starts from the folder committed under `playground/quickstart/pretrained_llm/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import platform
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import (
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
)

from llava.model.hub_kernels import hub_kernel_kwargs
from playground.easyvqa.translations import load_table
from playground.quickstart.corpus import (
    CorpusShape,
    Document,
    SceneTextWriter,
    Span,
    corpus_texts,
    encode,
    probe_documents,
)
from playground.quickstart.curves import CurveLog, answer_is_right, caption_first_tokens
from playground.quickstart.settings import (
    PRETRAINED_LLM,
    PretrainSettings,
    add_settings_arguments,
    settings_from_args,
)
from playground.quickstart.toy_tokenizer import train_toy_tokenizer

logger = logging.getLogger(__name__)

STAGE = "stage 0"
PROBE_BATCH = 128
MIN_LR_RATIO = 0.1


def build_tokenizer(settings: PretrainSettings) -> PreTrainedTokenizerBase:
    """The toy BPE, trained on stage-0 text (Chinese answer words segmented out first)."""
    table = load_table()
    texts = corpus_texts(table, settings.tokenizer_documents, settings.seed)
    return train_toy_tokenizer(texts, settings.vocab_size, list(table.answer_vocabulary("zh").values()))


def build_model(settings: PretrainSettings, tokenizer: PreTrainedTokenizerBase) -> LlamaForCausalLM:
    """A random-init LLaMA of the settings' sizes over the toy vocabulary (tied embeddings)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads,
        num_key_value_heads=settings.kv_heads,
        max_position_embeddings=tokenizer.model_max_length,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(settings.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model


def corpus_shape(settings: PretrainSettings, step: int) -> CorpusShape:
    """The curriculum at `step`.

    Over the first `curriculum_fraction` of the steps, options grow from 2 to `max_options`, turns
    from 1 to `max_turns`, and scenes move from all in the question's language (copying) to
    `same_language_scene_share` (translating). Yes/no questions are never negated before
    `negation_from` of the steps, then negated ones grow to half (as in the test) at `negation_full`:
    with half of them negated from the start, whether the shape matches says nothing about the
    answer on its own, and the comparison has no gradient to start from (an XOR).
    """
    progress = min(1.0, step / max(1.0, settings.curriculum_fraction * settings.steps))
    negation_span = max(1e-9, settings.negation_full - settings.negation_from)
    negation = min(1.0, max(0.0, (step / settings.steps - settings.negation_from) / negation_span))
    return CorpusShape(
        max_options=2 + round(progress * (settings.max_options - 2)),
        max_turns=1 + round(progress * (settings.max_turns - 1)),
        caption_share=settings.caption_share,
        drill_share=settings.drill_share,
        yes_no_chat_share=settings.yes_no_chat_share,
        drill_chat_share=settings.drill_chat_share,
        mcq_share=settings.mcq_share,
        word_reply_share=settings.word_reply_share,
        negation_share=0.5 * negation,
        benchmark_layout_share=settings.benchmark_layout_share,
        same_language_scene_share=1.0 - progress * (1.0 - settings.same_language_scene_share),
    )


def weighted_ids(document: Document, tokenizer, answer_weight: float) -> tuple[list[int], list[float]]:
    """Token ids of `document` and each token's loss weight (`answer_weight` on answers, 1 elsewhere)."""
    ids, spans = encode(document, tokenizer)
    weights = [1.0] * len(ids)
    for span in spans:
        weights[span.start : span.end] = [answer_weight] * (span.end - span.start)
    return ids, weights


def document_stream(settings: PretrainSettings, writer: SceneTextWriter, shape: CorpusShape, tokenizer):
    """An endless stream of (ids, weights) of documents of `shape`."""
    while True:
        yield weighted_ids(writer.document(shape), tokenizer, settings.answer_loss_weight)


def draw_step_documents(stream: Iterator[tuple[list[int], list[float]]], tokens: int) -> list[tuple[list[int], list[float]]]:
    """Documents from `stream` until they hold at least `tokens` tokens (one optimizer step's worth)."""
    documents, total = [], 0
    while total < tokens:
        documents.append(next(stream))
        total += len(documents[-1][0])
    return documents


def length_sorted_microbatches(documents: list, padded_tokens: int) -> list[list]:
    """`documents` sorted by length and cut into micro-batches of at most `padded_tokens` once padded.

    Every document starts at position 0 and attends only to itself, as a stage-2 conversation does;
    sorting keeps the padding small.
    """
    ordered = sorted(documents, key=lambda document: len(document[0]))
    batches: list[list] = [[]]
    for document in ordered:
        if batches[-1] and len(document[0]) * (len(batches[-1]) + 1) > padded_tokens:
            batches.append([])
        batches[-1].append(document)
    return batches


def collate(encoded: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """(B, T) right-padded `input_ids` and `attention_mask`."""
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def weighted_lm_loss_sum(model, documents: list[tuple[list[int], list[float]]], pad_id: int) -> tuple[torch.Tensor, float]:
    """(sum over tokens of weight x next-token cross-entropy, sum of the weights) of `documents` in one batch."""
    batch = collate([ids for ids, _ in documents], pad_id)
    weights = torch.zeros(batch["input_ids"].shape)
    for row, (_, document_weights) in enumerate(documents):
        weights[row, : len(document_weights)] = torch.tensor(document_weights)
    logits = model(**batch).logits[:, :-1]
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["input_ids"][:, 1:], reduction="none")
    return (losses * weights[:, 1:]).sum(), float(weights[:, 1:].sum())


def training_step(model, documents: list, pad_id: int, padded_tokens: int) -> float:
    """Accumulate the gradient of the weighted mean loss over `documents`; return that loss."""
    microbatches = length_sorted_microbatches(documents, padded_tokens)
    total_weight = sum(sum(weights[1:]) for _, weights in documents)
    loss_value = 0.0
    for microbatch in microbatches:
        loss_sum, _ = weighted_lm_loss_sum(model, microbatch, pad_id)
        (loss_sum / total_weight).backward()
        loss_value += loss_sum.item() / total_weight
    return loss_value


@torch.no_grad()
def score_spans(
    model, encoded: list[tuple[list[int], list[Span]]], pad_id: int, first_choices: dict[str, torch.Tensor]
) -> dict[tuple[str, str], tuple[int, int]]:
    """(skill, language) -> (right, asked) over the answer spans of `encoded` (`answer_is_right`)."""
    was_training = model.training
    model.eval()
    scores: dict[tuple[str, str], list[int]] = {}
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    for start in range(0, len(order), PROBE_BATCH):
        chunk = [encoded[i] for i in order[start : start + PROBE_BATCH]]
        logits = model(**collate([ids for ids, _ in chunk], pad_id)).logits
        for row, (ids, spans) in enumerate(chunk):
            for span in spans:
                choices = first_choices[span.lang] if span.skill == "caption" else None
                right = answer_is_right(
                    logits[row, span.start - 1 : span.end - 1], torch.tensor(ids[span.start : span.end]), choices
                )
                tally = scores.setdefault((span.skill, span.lang), [0, 0])
                tally[0] += right
                tally[1] += 1
    model.train(was_training)
    return {key: (right, asked) for key, (right, asked) in scores.items()}


def learning_rate(settings: PretrainSettings, step: int) -> float:
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.lr * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(settings: PretrainSettings, out: Path, command: str = "") -> dict:
    """Train tokenizer and LLM, save both under `out` with `pretrain.json`, `curves.csv`, `curves.png`."""
    started = time.perf_counter()
    parent, offset, curves = continued_run(settings, out)
    out.mkdir(parents=True, exist_ok=True)
    if parent is None:
        tokenizer = build_tokenizer(settings)
        model = build_model(settings, tokenizer)
    else:
        tokenizer = AutoTokenizer.from_pretrained(settings.init_from)
        model = LlamaForCausalLM.from_pretrained(settings.init_from, dtype=torch.float32, **hub_kernel_kwargs())
    pad_id = tokenizer.pad_token_id
    logger.info("toy tokenizer: %d tokens; LLM: %.2f M parameters", len(tokenizer), model.num_parameters() / 1e6)
    tokenizer.save_pretrained(out)
    probes = [encode(document, tokenizer) for document in probe_documents(load_table(), settings.probe_per_skill, settings.seed)]
    first_choices = caption_first_tokens(tokenizer, load_table())
    writer = SceneTextWriter(load_table(), random.Random(f"{settings.seed}/stage0-train"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=settings.weight_decay)
    losses: list[float] = []
    model.train()
    progress = tqdm(range(settings.steps + 1), desc="stage 0: LLM pretraining", unit="step", disable=None)
    for step in progress:
        if (step % settings.probe_every == 0 and (step or parent is None)) or step == settings.steps:
            curves.add(STAGE, offset + step, score_spans(model, probes, pad_id, first_choices))
            recent = sum(losses[-50:]) / max(1, len(losses[-50:]))
            logger.info("step %d (loss %.3f): %s", step, recent, _summary(curves.last(STAGE)))
            model.save_pretrained(out)  # the latest weights, so a long run can be inspected while it trains
            curves.write_csv(out / "curves.csv")
        if step == settings.steps:
            break
        shape = corpus_shape(settings, step)
        documents = draw_step_documents(document_stream(settings, writer, shape, tokenizer), settings.step_tokens)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(settings, step)
        optimizer.zero_grad(set_to_none=True)
        losses.append(training_step(model, documents, pad_id, settings.microbatch_tokens))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        progress.set_postfix(loss=f"{losses[-1]:.3f}", options=shape.max_options, turns=shape.max_turns)
    wall = time.perf_counter() - started
    curves.plot(out / "curves.png", title=f"Stage 0: tiny LLM pretraining on synthetic text (seed {settings.seed})")
    summary = {
        "command": command,
        "continues": parent,
        "settings": asdict(settings),
        "wall_time_s": round(wall, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "vocabulary": len(tokenizer),
        "parameters": model.num_parameters(),
        "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
        "final_probe": {f"{skill} / {lang}": round(value, 4) for (skill, lang), value in curves.last(STAGE).items()},
    }
    (out / "pretrain.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return summary


INHERITED = ("vocab_size", "tokenizer_documents", "hidden_size", "intermediate_size", "layers", "heads", "kv_heads")


def parent_record(settings: PretrainSettings, out: Path) -> dict:
    """The `pretrain.json` of the run `--init-from` continues; refuses a folder without one, or `--out` itself."""
    source = Path(settings.init_from)
    record = source / "pretrain.json"
    if not record.is_file():
        raise FileNotFoundError(f"--init-from {source}: no pretrain.json there; give a folder written by this command")
    if source.resolve() == out.resolve():
        raise ValueError(f"--init-from {source} is also --out; write the continued run to another folder")
    return json.loads(record.read_text(encoding="utf-8"))


def continued_run(settings: PretrainSettings, out: Path) -> tuple[dict | None, int, CurveLog]:
    """(the earlier run's pretrain.json, its last step, its curves) for `--init-from`, else (None, 0, empty).

    The earlier run's record is nested in the new `pretrain.json` under "continues", so the chain of
    commands that made a checkpoint stays with it; its curves go on, steps counted from its last.
    """
    if not settings.init_from:
        return None, 0, CurveLog()
    parent = parent_record(settings, out)
    source = Path(settings.init_from)
    curves = CurveLog.read_csv(source / "curves.csv") if (source / "curves.csv").is_file() else CurveLog()
    offset = max((row["step"] for row in curves.rows), default=0)
    return parent, offset, curves


def inherit_sizes(settings: PretrainSettings, args: argparse.Namespace, out: Path) -> PretrainSettings:
    """With `--init-from`, the tokenizer and model sizes are the earlier run's; a size flag that differs is refused."""
    inherited = parent_record(settings, out)["settings"]
    for name in INHERITED:
        given = getattr(args, name, None)
        if given is not None and name in inherited and given != inherited[name]:
            raise ValueError(
                f"--{name.replace('_', '-')} {given}: --init-from {settings.init_from} continues a run with "
                f"{inherited[name]}, and a continued run keeps its tokenizer and sizes; drop the flag"
            )
    return dataclasses.replace(settings, **{name: inherited[name] for name in INHERITED if name in inherited})


def _summary(accuracy: dict[tuple[str, str], float]) -> str:
    skills = dict.fromkeys(skill for skill, _ in accuracy)
    means = {skill: sum(v for (s, _), v in accuracy.items() if s == skill) / 6 for skill in skills}
    return ", ".join(f"{skill} {100 * value:.0f}%" for skill, value in means.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.quickstart.pretrain_llm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PRETRAINED_LLM, help=f"output folder (default: {PRETRAINED_LLM})")
    add_settings_arguments(parser, PretrainSettings)
    args = parser.parse_args(argv)
    settings = settings_from_args(args, PretrainSettings())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = " ".join(["python -m playground.quickstart.pretrain_llm", *(argv if argv is not None else sys.argv[1:])])
    try:
        if settings.init_from:
            settings = inherit_sizes(settings, args, args.out)
        summary = pretrain(settings, args.out, command)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    print(json.dumps({key: summary[key] for key in ("wall_time_s", "vocabulary", "parameters", "final_loss")}))
    print(f"pretrained LLM, curves and pretrain.json written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
