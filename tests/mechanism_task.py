"""A synthetic task in which the right visual tokens depend on the prompt's language.

Six languages, each with its own prompt words and its own word for each of four concepts (24 concept
words); three template tokens are shared by every prompt, as a chat template is. An image shows one
concept. A frozen head reads the visual tokens (mean-pooled, against the frozen word embeddings of
the 24 concept words, as a tied LM head would) and must name the image's concept *in the prompt's
language*. Only the projector trains.

A projector that cannot see the text (mlp2x_gelu) can at best spread its answer evenly over the six
translations of the concept: its loss cannot go below ln 6. A projector whose experts are picked by
the prompt's language can reach ~0. The language label is never an input of the loss other than
through the target word, and never touches the router.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from llava.model.multimodal_projector import ROUTING_METRIC, build_vision_projector
from parrot_moe.diagnostics import LanguageRouting, capture_routing, diagnose

LANGS = ("en", "zh", "pt", "ar", "tr", "ru")
NUM_CONCEPTS, PROMPT_WORDS, SHARED_TOKENS, PROMPT_LENGTH = 4, 8, 3, 5
D, C, N = 16, 32, 4  # vision width, LLM width, patches
FLOOR = math.log(len(LANGS))  # the best loss without the language: ln 6


@dataclass
class Task:
    embeddings: torch.Tensor  # (V, C) frozen word embeddings
    prototypes: torch.Tensor  # (K, 1+N, D) image features of each concept
    prompt_words: torch.Tensor  # (L, PROMPT_WORDS) token ids
    shared: torch.Tensor  # (SHARED_TOKENS,) template token ids
    concept_words: torch.Tensor  # (L, K) token ids

    def batch(self, size: int, generator: torch.Generator):
        """(image features (B, 1+N, D), text embeddings (B, T, C), target word index (B,), language (B,))."""
        lang = torch.randint(len(LANGS), (size,), generator=generator)
        concept = torch.randint(NUM_CONCEPTS, (size,), generator=generator)
        images = self.prototypes[concept] + 0.1 * torch.randn(size, 1 + N, D, generator=generator)
        picks = torch.rand(size, PROMPT_WORDS, generator=generator).argsort(-1)[:, :PROMPT_LENGTH]
        words = self.prompt_words[lang].gather(1, picks)
        ids = torch.cat([self.shared.expand(size, -1), words], dim=1)
        return images, self.embeddings[ids], lang * NUM_CONCEPTS + concept, lang


def make_task(seed: int = 0, embedding_std: float = 0.1) -> Task:
    """Word embeddings of std `embedding_std` per channel (norm ~0.57 at C=32, like a small LLM's)."""
    gen = torch.Generator().manual_seed(seed)
    vocab = len(LANGS) * (PROMPT_WORDS + NUM_CONCEPTS) + SHARED_TOKENS
    ids = torch.arange(vocab)
    prompt_words = ids[: len(LANGS) * PROMPT_WORDS].view(len(LANGS), PROMPT_WORDS)
    concept_words = ids[len(LANGS) * PROMPT_WORDS : -SHARED_TOKENS].view(len(LANGS), NUM_CONCEPTS)
    return Task(
        embeddings=embedding_std * torch.randn(vocab, C, generator=gen),
        prototypes=torch.randn(NUM_CONCEPTS, 1 + N, D, generator=gen),
        prompt_words=prompt_words,
        shared=ids[-SHARED_TOKENS:],
        concept_words=concept_words,
    )


def build(projector_type: str, seed: int = 0, **settings):
    torch.manual_seed(seed)
    cfg = SimpleNamespace(mm_projector_type=projector_type, mm_hidden_size=D, hidden_size=C,
                          mm_vision_select_feature="patch", **settings)
    return build_vision_projector(cfg)


def head_logits(task: Task, visual_tokens: torch.Tensor) -> torch.Tensor:
    """The frozen head: pooled visual tokens against the 24 concept words' embeddings."""
    return visual_tokens.mean(dim=1) @ task.embeddings[task.concept_words.flatten()].T


def loss_of(projector, task: Task, images, text, target, guidance: bool = True):
    out = projector(images, text_embeds=text if guidance else None,
                    text_mask=torch.ones(text.shape[:2], dtype=torch.bool) if guidance else None)
    return F.cross_entropy(head_logits(task, out.visual_tokens), target), out


def train(projector, task: Task, steps: int = 300, lr: float = 3e-3, batch: int = 96, seed: int = 0,
          guidance: bool = True) -> float:
    """Adam on the projector only; returns the mean loss of a held-out batch of 1,024 samples."""
    gen = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.Adam(projector.parameters(), lr=lr)
    for _ in range(steps):
        loss, _ = loss_of(projector, task, *task.batch(batch, gen)[:3], guidance=guidance)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        images, text, target, _ = task.batch(1024, torch.Generator().manual_seed(10_000 + seed))
        return float(loss_of(projector, task, images, text, target, guidance=guidance)[0])


@torch.no_grad()
def routing_diagnostics(projector, task: Task, guidance: bool = True, count: int = 600):
    """The four diagnostics on held-out prompts, per language (dict lang -> LanguageDiagnostics)."""
    images, text, _, lang = task.batch(count, torch.Generator().manual_seed(20_000))
    with capture_routing(projector) as calls:
        _, out = loss_of(projector, task, images, text, torch.zeros(count, dtype=torch.long), guidance=guidance)
    probs = out.metrics[ROUTING_METRIC]
    captured = calls[0] if calls else (None, None, probs)
    records = {}
    for index, code in enumerate(LANGS):
        rows = lang == index
        records[code] = LanguageRouting(
            probs=probs[rows],
            guidance=None if captured[0] is None else captured[0][rows],
            logits=None if captured[1] is None else captured[1][rows],
        )
    return {row.lang: row for row in diagnose(records)}
