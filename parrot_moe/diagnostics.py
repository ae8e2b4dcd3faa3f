"""Routing diagnostics: could the router separate the prompt languages, and does it?

Four numbers per prompt language, from the vectors one forward pass gives for each prompt:

- **guidance → language**: the share of prompts whose Eq-2 guidance vector H'_v (the router's input)
  lies nearest to its own language's centroid (leave-one-out: the prompt itself is left out of its
  centroid). High means the router's input carries the language: the router *could* separate them.
- **routing entropy / ln E**: the mean entropy of P (Eq 3) over ln E. 1 is uniform routing (every
  expert weighs 1/E); 0 is one expert per prompt.
- **routing → language**: the same nearest-centroid share on the routing vectors P. High means the
  router *does* route by language.
- **logit spread**: the mean standard deviation over the experts of the logits the softmax sees. A softmax
  of logits that spread by much less than 1 stays close to uniform whatever the router's input.

`capture_routing(projector)` records the three vectors (guidance, logits, P) while the projector
runs; `diagnose` turns them into one `LanguageDiagnostics` per language.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class LanguageRouting:
    """What the router saw and did for the prompts of one language (n prompts, C channels, E experts)."""

    probs: torch.Tensor  # (n, E) routing probabilities P
    guidance: torch.Tensor | None = None  # (n, C) Eq-2 guidance H'_v, the router's input
    logits: torch.Tensor | None = None  # (n, E) router logits before the softmax

    @property
    def count(self) -> int:
        return int(self.probs.shape[0])

    @property
    def num_experts(self) -> int:
        return int(self.probs.shape[1])


@dataclass(frozen=True)
class LanguageDiagnostics:
    lang: str
    count: int
    guidance_recovery: float | None  # share in [0, 1]; None when it cannot be measured
    entropy_ratio: float  # mean H(P) / ln E
    routing_recovery: float | None
    logit_spread: float | None  # mean std of the logits over the experts


def normalised_entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(P) / ln E for each row of probs (n, E); 1 for uniform rows, 0 for one-hot rows."""
    probs = probs.double()
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    return entropy / math.log(probs.shape[-1]) if probs.shape[-1] > 1 else torch.zeros_like(entropy)


def nearest_centroid_recovery(vectors: dict[str, torch.Tensor]) -> dict[str, float | None]:
    """Per language, the share of its rows strictly nearest (Euclidean) to its own centroid, leave-one-out.

    vectors: language -> (n, d). A row's own language centroid is computed without that row, the
    others from all their rows. None for a language with fewer than two rows, and for every language
    when fewer than two languages are present (there is nothing to tell apart).
    """
    usable = {lang: v.double() for lang, v in vectors.items() if v.shape[0] >= 2}
    if len(usable) < 2:
        return {lang: None for lang in vectors}
    langs = list(usable)
    sums = torch.stack([usable[lang].sum(0) for lang in langs])  # (L, d)
    counts = torch.tensor([usable[lang].shape[0] for lang in langs], dtype=torch.float64)
    result: dict[str, float | None] = {lang: None for lang in vectors}
    for index, lang in enumerate(langs):
        rows = usable[lang]
        centroids = (sums / counts[:, None]).unsqueeze(0).repeat(rows.shape[0], 1, 1)  # (n, L, d)
        centroids[:, index] = (sums[index] - rows) / (counts[index] - 1)
        distances = (centroids - rows[:, None]).norm(dim=-1)  # (n, L)
        others = torch.cat([distances[:, :index], distances[:, index + 1 :]], dim=1).min(dim=1).values
        # Strictly nearer than every other centroid: identical vectors (uniform routing) recover nothing.
        result[lang] = float((distances[:, index] < others - 1e-9).double().mean())
    return result


def diagnose(routing: dict[str, LanguageRouting]) -> list[LanguageDiagnostics]:
    """The four diagnostics of every language in `routing` (in its order)."""
    has_guidance = all(r.guidance is not None for r in routing.values())
    guidance = nearest_centroid_recovery({lang: r.guidance for lang, r in routing.items()}) if has_guidance else {}
    by_routing = nearest_centroid_recovery({lang: r.probs for lang, r in routing.items()})
    rows = []
    for lang, record in routing.items():
        spread = None if record.logits is None else float(record.logits.double().std(dim=-1, unbiased=False).mean())
        rows.append(
            LanguageDiagnostics(
                lang=lang,
                count=record.count,
                guidance_recovery=guidance.get(lang),
                entropy_ratio=float(normalised_entropy(record.probs).mean()),
                routing_recovery=by_routing[lang],
                logit_spread=spread,
            )
        )
    return rows


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


DIAGNOSTICS_HEADER = (
    "| language | prompts | guidance → language | routing entropy / ln E | routing → language | logit spread |",
    "|---|---|---|---|---|---|",
)


def diagnostics_markdown(rows: list[LanguageDiagnostics], label=lambda lang: lang) -> list[str]:
    """The diagnostics as markdown table lines (one row per language)."""
    lines = list(DIAGNOSTICS_HEADER)
    for row in rows:
        spread = "n/a" if row.logit_spread is None else f"{row.logit_spread:.3f}"
        lines.append(
            f"| {label(row.lang)} | {row.count} | {_percent(row.guidance_recovery)} | {row.entropy_ratio:.3f} | "
            f"{_percent(row.routing_recovery)} | {spread} |"
        )
    return lines


@contextmanager
def capture_routing(projector: nn.Module):
    """Record (guidance, logits, probs) of every routed call of a parrot_moe projector.

    Yields a list that grows by one (guidance (B, C), logits (B, E), probs (B, E)) tuple per
    forward of the router, all detached on the CPU in float32. Forward hooks only: the projector's
    computation is unchanged, and the hooks are removed on exit.
    """
    router = getattr(getattr(projector, "moe", None), "router", None)
    gate = getattr(router, "gate", None)
    if router is None or gate is None:
        raise ValueError(
            f"{type(projector).__name__} has no text-guided router (moe.router.gate); routing diagnostics need "
            "--mm_projector_type parrot_moe"
        )
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    pending: list[torch.Tensor] = []

    def on_gate(_module, _inputs, logits):  # the logits the softmax sees: after the router's temperature
        pending.append(logits.detach().float().cpu() / getattr(router, "temperature", 1.0))

    def on_router(_module, inputs, probs):
        calls.append((inputs[0].detach().float().cpu(), pending.pop(), probs.detach().float().cpu()))

    handles = [gate.register_forward_hook(on_gate), router.register_forward_hook(on_router)]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()
