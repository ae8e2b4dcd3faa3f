"""Expert share per prompt language (paper Fig 5c): `python -m parrot_moe.analysis`.

    python -m parrot_moe.analysis --model-path CKPT --data DATA --out DIR

DATA is a LLaVA JSON/JSONL file whose items carry `lang` and an `image` (relative to
`--image-folder`, required with such files), or one or more VLMEvalKit TSVs (images inline, language
from the file name; no `--image-folder`). Only the vision tower and the projector run: routing needs
the prompt's word embeddings and the image, not the LLM. Writes, per prompt language:

- `expert_distribution.csv`: count, the mean routing probability of each expert, the entropy (nats)
  and the four routing diagnostics of `parrot_moe.diagnostics` (guidance → language, routing
  entropy / ln E, routing → language, logit spread);
- `expert_distribution.png`: a stacked bar per language (languages named in full, in the order en,
  zh, pt, ar, tr, ru), each labelled with its routing entropy / ln E;
- `routing_diagnostics.md`: the diagnostics as a table, also printed.

Reading them: a high "guidance → language" says the router's input carries the prompt's language
(the router *could* separate languages); a low entropy and a high "routing → language" say it
*does*; a logit spread well below 1 explains uniform routing (the softmax barely moves).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from llava.data.dataset import item_images, load_items
from llava.eval.languages import language_label, ordered_languages
from llava.inference import build_prompt, generation_inputs
from llava.model.builder import load_pretrained_model
from llava.model.multimodal_projector import ROUTING_METRIC
from parrot_moe.diagnostics import LanguageRouting, capture_routing, diagnose, diagnostics_markdown

logger = logging.getLogger(__name__)


@dataclass
class Probe:
    lang: str
    prompt: str
    image: Image.Image


def probes_from_llava_json(path: str, image_folder: str, max_per_lang: int) -> list[Probe]:
    probes, counts = [], defaultdict(int)
    for item in load_items(path):
        lang, images = item.get("lang"), item_images(item)
        if not lang or not images or counts[lang] >= max_per_lang:
            continue
        human = next(t["value"] for t in item["conversations"] if t.get("from") == "human")
        image_path = os.path.join(image_folder, images[0])
        if not os.path.isfile(image_path):
            raise FileNotFoundError(
                f"{path}: item {item.get('id', '?')!r} names image {images[0]!r}, but {image_path} does not exist; "
                "pass --image-folder FOLDER, the folder its `image` paths are relative to"
            )
        with Image.open(image_path) as img:
            probes.append(Probe(lang, human.replace("<image>", "").strip(), img.convert("RGB")))
        counts[lang] += 1
    return probes


def probes_from_tsv(paths: list[str], max_per_lang: int) -> list[Probe]:
    from llava.eval.benchmark import read_benchmark
    from llava.eval.prompts import build_mcq_prompt

    probes = []
    for path in paths:
        bench = read_benchmark(path)
        for item in bench.items[:max_per_lang]:
            probes.append(Probe(bench.language, build_mcq_prompt(item, bench.language), bench.load_image(item)))
    return probes


@torch.no_grad()
def routing_by_language(
    model, tokenizer, image_processor, probes: list[Probe], batch_size: int = 16
) -> dict[str, LanguageRouting]:
    """{lang: what the router saw and did}, computed at prefill exactly as generation computes them."""
    if ROUTING_METRIC not in model.mm_projector.reported_metrics:
        raise ValueError(f"this checkpoint's projector ({model.config.mm_projector_type}) does not route; "
                         "expert analysis needs --mm_projector_type parrot_moe")
    out: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = defaultdict(list)
    with capture_routing(model.mm_projector) as calls:
        for start in tqdm(range(0, len(probes), batch_size), desc="routing", unit="batch"):
            batch = probes[start : start + batch_size]
            prompts = [build_prompt(model, p.prompt, has_image=True) for p in batch]
            ids, mask, pixels = generation_inputs(model, tokenizer, image_processor, prompts, [p.image for p in batch])
            calls.clear()
            merged = model.prepare_inputs_embeds(ids, pixels, mask, padding_side="left")
            guidance, logits, probs = (torch.cat(parts) for parts in zip(*calls))  # one row per image
            if not torch.allclose(probs, merged.projector_output.metrics[ROUTING_METRIC].float().cpu()):
                raise RuntimeError("the captured routing differs from the projector's output")
            for row, probe in enumerate(batch):
                out[probe.lang].append((guidance[row], logits[row], probs[row]))
    return {
        lang: LanguageRouting(
            probs=torch.stack([r[2] for r in rows]),
            guidance=torch.stack([r[0] for r in rows]),
            logits=torch.stack([r[1] for r in rows]),
        )
        for lang, rows in out.items()
    }


def write_csv(routing: dict[str, LanguageRouting], path: Path) -> None:
    """One row per language: count, mean share of each expert, entropy (nats) and the four diagnostics."""
    num_experts = next(iter(routing.values())).num_experts
    ordered = {lang: routing[lang] for lang in ordered_languages(routing)}
    diagnostics = {row.lang: row for row in diagnose(ordered)}

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.4f}"

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["lang", "n", *[f"expert_{i}" for i in range(num_experts)], "entropy",
                         "guidance_recovery", "entropy_ratio", "routing_recovery", "logit_spread"])
        for lang, record in ordered.items():
            probs, row = record.probs, diagnostics[lang]
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
            writer.writerow([lang, record.count, *[f"{v:.4f}" for v in probs.mean(0).tolist()], f"{entropy:.4f}",
                             cell(row.guidance_recovery), cell(row.entropy_ratio), cell(row.routing_recovery),
                             cell(row.logit_spread)])


def diagnostics_report(routing: dict[str, LanguageRouting]) -> str:
    """The diagnostics table (markdown), languages in the shared order and named in full."""
    ordered = {lang: routing[lang] for lang in ordered_languages(routing)}
    return "\n".join(diagnostics_markdown(diagnose(ordered), label=language_label))


def plot_expert_distribution(routing: dict[str, torch.Tensor], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = ordered_languages(routing)
    shares = torch.stack([routing[lang].probs.mean(0) for lang in langs])  # (L, E)
    ratios = {row.lang: row.entropy_ratio for row in diagnose({lang: routing[lang] for lang in langs})}
    fig, ax = plt.subplots(figsize=(1.2 * len(langs) + 2.5, 4))
    bottom = torch.zeros(len(langs))
    colours = plt.get_cmap("tab10")
    for expert in range(shares.shape[1]):
        ax.bar([language_label(lang) for lang in langs], shares[:, expert], bottom=bottom, label=f"expert {expert}", color=colours(expert % 10))
        bottom += shares[:, expert]
    for position, lang in enumerate(langs):
        ax.text(position, 1.01, f"H/ln E {ratios[lang]:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("mean routing probability (share of 1)")
    ax.set_xlabel("prompt language")
    ax.set_ylim(0, 1.08)
    ax.set_title(title or "Expert distribution per prompt language (routing entropy / ln E above each bar)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--data", required=True, nargs="+", help="LLaVA JSON/JSONL with `lang`, or VLMEvalKit TSVs")
    parser.add_argument("--image-folder", default=None,
                        help="folder the `image` paths of LLaVA JSON/JSONL data are relative to (required with them)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-per-lang", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    for path in args.data:
        if not os.path.isfile(path):
            parser.error(f"--data {path}: no such file")
    if all(p.endswith(".tsv") for p in args.data):
        if args.image_folder is not None:
            parser.error("--image-folder: VLMEvalKit TSVs carry their images inline; drop --image-folder")
        probes = probes_from_tsv(args.data, args.max_per_lang)
    else:
        if args.image_folder is None:
            parser.error("--image-folder is required with LLaVA JSON/JSONL data: pass --image-folder FOLDER, "
                         "the folder the items' `image` paths are relative to (VLMEvalKit TSVs need none)")
        if not os.path.isdir(args.image_folder):
            parser.error(f"--image-folder {args.image_folder}: no such folder; pass the folder the items' "
                         "`image` paths are relative to")
        try:
            probes = [p for path in args.data for p in probes_from_llava_json(path, args.image_folder, args.max_per_lang)]
        except FileNotFoundError as err:
            parser.error(str(err))
    if not probes:
        parser.error(f"--data {' '.join(args.data)}: no items with both an image and a language")
    tokenizer, model, image_processor, _ = load_pretrained_model(args.model_path, device=args.device)
    routing = routing_by_language(model, tokenizer, image_processor, probes, args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(routing, out / "expert_distribution.csv")
    plot_expert_distribution(routing, out / "expert_distribution.png")
    report = diagnostics_report(routing)
    (out / "routing_diagnostics.md").write_text(report + "\n", encoding="utf-8")
    print(report)
    print(f"wrote {out / 'expert_distribution.csv'}, {out / 'expert_distribution.png'} and "
          f"{out / 'routing_diagnostics.md'}")


if __name__ == "__main__":
    main()
