"""Parrot's mechanism learns: on a task in which the right visual tokens depend on the prompt's language
(`tests/mechanism_task.py`), training only the projector, the text-guided MoE reaches a loss that a
projector blind to the text cannot, and its router separates the languages. Zeroing the text guidance
takes both away. Each run trains a few hundred Adam steps on tiny shapes (about a second each)."""

import math

import pytest
import torch
from mechanism_task import FLOOR, LANGS, build, make_task, routing_diagnostics, train

SHARP = {"moe_guidance_norm": "layernorm", "moe_router_temperature": 0.3}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task():
    return make_task(seed=0)


def test_a_projector_blind_to_the_text_cannot_beat_ln6(task):
    loss = train(build("mlp2x_gelu"), task)
    assert loss >= FLOOR - 0.05, f"mlp2x_gelu reached {loss:.3f} < ln 6 = {FLOOR:.3f}: the task leaks the language"


def test_the_papers_router_learns_the_task_and_reads_the_language_from_routing(task):
    projector = build("parrot_moe")
    loss = train(projector, task)
    diagnostics = routing_diagnostics(projector, task)
    assert loss < 0.1 * FLOOR, f"parrot_moe (paper defaults) loss {loss:.3f}, ln 6 = {FLOOR:.3f}"
    for lang in LANGS:
        assert diagnostics[lang].guidance_recovery >= 0.95
        assert diagnostics[lang].routing_recovery >= 0.95, diagnostics[lang]


@pytest.mark.parametrize("seed", [0, 1])
def test_standardised_guidance_routes_each_language_to_its_experts(task, seed):
    projector = build("parrot_moe", seed=seed, **SHARP)
    loss = train(projector, task, seed=seed)
    diagnostics = routing_diagnostics(projector, task)
    assert loss < 0.1 * FLOOR, f"loss {loss:.3f}"
    for lang in LANGS:
        assert diagnostics[lang].routing_recovery >= 0.95, diagnostics[lang]
        assert diagnostics[lang].entropy_ratio <= 0.5, diagnostics[lang]


@pytest.mark.parametrize("settings", [{}, SHARP], ids=["paper", "layernorm"])
def test_zeroing_the_text_guidance_takes_the_mechanism_away(task, settings):
    """The same training with `text_embeds=None` (H'_v = 0): uniform routing, the ln 6 floor, no language."""
    projector = build("parrot_moe", **settings)
    loss = train(projector, task, guidance=False)
    diagnostics = routing_diagnostics(projector, task, guidance=False)
    assert loss >= FLOOR - 0.05
    for lang in LANGS:
        assert diagnostics[lang].entropy_ratio == pytest.approx(1.0, abs=1e-6)
        assert diagnostics[lang].routing_recovery < 0.95


def test_the_papers_router_stays_near_uniform_where_standardised_guidance_does_not(task):
    """What the two options buy, measured: the paper's router solves the task with near-uniform P."""
    paper, sharp = build("parrot_moe"), build("parrot_moe", **SHARP)
    train(paper, task), train(sharp, task)
    paper_entropy = max(d.entropy_ratio for d in routing_diagnostics(paper, task).values())
    sharp_entropy = max(d.entropy_ratio for d in routing_diagnostics(sharp, task).values())
    assert sharp_entropy < paper_entropy - 0.3, (paper_entropy, sharp_entropy)
    assert math.isfinite(paper_entropy)


def test_router_options_are_validated_and_keep_zero_guidance_uniform():
    from parrot_moe.router import TextGuidedRouter

    with pytest.raises(ValueError, match="--moe_router_temperature must be > 0"):
        build("parrot_moe", moe_router_temperature=0.0)
    with pytest.raises(ValueError, match="--moe_guidance_norm 'rms' is not supported"):
        build("parrot_moe", moe_guidance_norm="rms")
    router = TextGuidedRouter(8, 4, guidance_norm="layernorm", temperature=0.3)
    assert torch.allclose(router(torch.zeros(2, 8)), torch.full((2, 4), 0.25))
    guidance = torch.randn(3, 8)
    assert torch.allclose(router(guidance), router(5 * guidance), atol=1e-5)  # standardised: scale-free
    plain = TextGuidedRouter(8, 4)
    plain.gate.weight.data.copy_(router.gate.weight.data)
    assert not torch.allclose(plain(guidance), plain(5 * guidance), atol=1e-3)  # the paper's is not


def test_the_diagnostics_on_known_vectors():
    from parrot_moe.diagnostics import LanguageRouting, diagnose, nearest_centroid_recovery

    one_hot = {"en": torch.eye(3)[[0, 0, 0]], "zh": torch.eye(3)[[1, 1, 1]]}
    assert nearest_centroid_recovery(one_hot) == {"en": 1.0, "zh": 1.0}
    uniform = {lang: torch.full((4, 3), 1 / 3) for lang in ("en", "zh")}
    assert nearest_centroid_recovery(uniform) == {"en": 0.0, "zh": 0.0}
    assert nearest_centroid_recovery({"en": torch.eye(3)}) == {"en": None}
    rows = {row.lang: row for row in diagnose({lang: LanguageRouting(v) for lang, v in uniform.items()})}
    assert rows["en"].entropy_ratio == pytest.approx(1.0) and rows["en"].guidance_recovery is None
    sharp = diagnose({"en": LanguageRouting(one_hot["en"], logits=torch.tensor([[2.0, 0.0, -2.0]] * 3))})
    assert sharp[0].entropy_ratio == pytest.approx(0.0, abs=1e-9)
    assert sharp[0].logit_spread == pytest.approx(torch.tensor([2.0, 0.0, -2.0]).std(unbiased=False).item())
