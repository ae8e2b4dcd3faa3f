"""Behaviour of the parrot_moe projector: invariances, gradients, bypass, routing outputs, aux loss."""

from types import SimpleNamespace

import pytest
import torch

from llava.model.multimodal_projector import ROUTING_METRIC, ProjectorOutput, build_vision_projector
from parrot_moe import ParrotMoeProjector
from parrot_moe.router import load_balancing_loss

D, C, E, N, T, B = 12, 16, 4, 5, 6, 3


def _projector(**moe) -> ParrotMoeProjector:
    torch.manual_seed(0)
    select = moe.pop("select", "patch")
    cfg = SimpleNamespace(
        mm_projector_type="parrot_moe",
        mm_hidden_size=D,
        hidden_size=C,
        mm_vision_select_feature=select,
        moe_num_experts=E,
        **moe,
    )
    return build_vision_projector(cfg).double()


def _inputs(batch: int = B) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(batch, 1 + N, D, generator=gen, dtype=torch.float64)
    text = torch.randn(batch, T, C, generator=gen, dtype=torch.float64) * 3
    mask = torch.rand(batch, T, generator=gen) < 0.7
    mask[:, 0] = True
    return image, text, mask


def _tokens(proj, image, text=None, mask=None) -> torch.Tensor:
    return proj(image, text_embeds=text, text_mask=mask).visual_tokens


def test_registered_projector_declares_text_guidance_cls_and_routing():
    proj = _projector()
    assert isinstance(proj, ParrotMoeProjector)
    assert proj.requires_text_guidance and proj.wants_cls_token
    assert proj.reported_metrics == (ROUTING_METRIC,)


@pytest.mark.parametrize("select, n_out", [("patch", N), ("cls_patch", N + 1)])
def test_output_shape_follows_select_feature_and_num_output_tokens(select, n_out):
    image, text, mask = _inputs()
    proj = _projector(select=select)
    assert _tokens(proj, image, text, mask).shape == (B, n_out, C)
    assert proj.num_output_tokens(N) == n_out


def test_padding_the_text_changes_nothing():
    proj = _projector(moe_top_k=2)
    image, text, mask = _inputs()
    padded_text = torch.cat([text, torch.randn(B, 4, C, dtype=torch.float64)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(B, 4, dtype=torch.bool)], dim=1)
    expected = _tokens(proj, image, text, mask)
    assert torch.allclose(_tokens(proj, image, padded_text, padded_mask), expected, rtol=0, atol=1e-12)


def test_masked_out_tokens_such_as_answers_do_not_change_output():
    proj = _projector(moe_top_k=2)
    image, text, mask = _inputs()
    expected = _tokens(proj, image, text, mask)
    changed = torch.where(mask[..., None], text, torch.randn_like(text) * 10)
    assert torch.allclose(_tokens(proj, image, changed, mask), expected, rtol=0, atol=1e-12)


def test_guidance_text_changes_routing():
    proj = _projector()
    image, text, mask = _inputs()
    before = proj(image, text_embeds=text, text_mask=mask).metrics[ROUTING_METRIC]
    after = proj(image, text_embeds=text.flip(0), text_mask=mask.flip(0)).metrics[ROUTING_METRIC]
    assert not torch.allclose(after, before)


@pytest.mark.parametrize("top_k", [None, 1, 2])
def test_sample_output_does_not_depend_on_other_samples(top_k):
    proj = _projector(moe_top_k=top_k)
    image, text, mask = _inputs(batch=5)
    batched = proj(image, text_embeds=text, text_mask=mask)
    for b in range(5):
        alone = proj(image[b : b + 1], text_embeds=text[b : b + 1], text_mask=mask[b : b + 1])
        assert torch.allclose(alone.visual_tokens[0], batched.visual_tokens[b], rtol=0, atol=1e-12)
        torch.testing.assert_close(alone.metrics[ROUTING_METRIC][0], batched.metrics[ROUTING_METRIC][b])


@pytest.mark.parametrize("text_given", [True, False])
def test_sample_without_guidance_text_is_finite_and_uniformly_routed(text_given):
    proj = _projector(moe_top_k=2, moe_aux_loss_coef=0.1)
    image, text, mask = _inputs()
    mask[1] = False
    out = proj(image, text_embeds=text if text_given else None, text_mask=mask if text_given else None)
    out.visual_tokens.sum().backward()
    uniform = torch.full((E,), 1 / E, dtype=torch.float64)
    assert torch.isfinite(out.visual_tokens).all() and torch.isfinite(out.aux_loss)
    assert all(torch.isfinite(p.grad).all() for p in proj.parameters() if p.grad is not None)
    assert torch.allclose(out.metrics[ROUTING_METRIC][1], uniform)


def test_top_k_equal_to_num_experts_is_the_dense_sum_over_experts():
    proj = _projector(moe_top_k=E, moe_renormalize_top_k=True)
    image, text, mask = _inputs()
    out = proj(image, text_embeds=text, text_mask=mask)
    hidden = proj.project(image)[:, 1:]
    probs = out.metrics[ROUTING_METRIC]
    dense = sum(probs[:, e, None, None] * proj.moe.experts.expert_forward(hidden, e) for e in range(E))
    assert torch.allclose(out.visual_tokens, hidden + dense, rtol=0, atol=1e-12)


@pytest.mark.parametrize("renormalize", [False, True])
def test_top_1_runs_only_the_argmax_expert(renormalize):
    proj = _projector(moe_top_k=1, moe_renormalize_top_k=renormalize)
    image, text, mask = _inputs(batch=6)
    out = proj(image, text_embeds=text, text_mask=mask)
    hidden = proj.project(image)[:, 1:]
    probs = out.metrics[ROUTING_METRIC]
    assert probs.argmax(-1).unique().numel() > 1, "test needs samples routed to different experts"
    for b in range(6):
        best = int(probs[b].argmax())
        weight = 1.0 if renormalize else probs[b, best]
        expected = hidden[b] + weight * proj.moe.experts.expert_forward(hidden[b], best)
        assert torch.allclose(out.visual_tokens[b], expected, rtol=0, atol=1e-12)


def _expert_grad_norms(proj: ParrotMoeProjector) -> torch.Tensor:
    """Per-expert gradient norm over all expert parameters: (E,)."""
    grads = [p.grad.flatten(1).norm(dim=1) for p in proj.moe.experts.parameters()]
    return torch.stack(grads).sum(0)


def test_gradients_reach_router_selected_experts_and_base_but_not_unselected_experts():
    proj = _projector(moe_top_k=1)
    image, text, mask = _inputs(batch=3)
    out = proj(image, text_embeds=text, text_mask=mask)
    out.visual_tokens.square().sum().backward()
    selected = set(out.metrics[ROUTING_METRIC].argmax(-1).tolist())
    assert 1 < len(selected) < E, "test needs a partly hit expert set"
    norms = _expert_grad_norms(proj)
    assert all((norms[e] > 0) == (e in selected) for e in range(E))
    assert proj.moe.router.gate.weight.grad.abs().sum() > 0
    assert all(proj.get_submodule(name).weight.grad.abs().sum() > 0 for name in ("0", "2"))


def test_dense_routing_gives_every_expert_a_gradient():
    proj = _projector()
    image, text, mask = _inputs()
    _tokens(proj, image, text, mask).square().sum().backward()
    assert (_expert_grad_norms(proj) > 0).all()


def test_gradient_reaches_text_embeddings():
    proj = _projector()
    image, text, mask = _inputs()
    text.requires_grad_(True)
    _tokens(proj, image, text, mask).square().sum().backward()
    assert text.grad[mask].abs().sum() > 0 and text.grad[~mask].abs().sum() == 0


@pytest.mark.parametrize("select", ["patch", "cls_patch"])
def test_bypass_returns_exactly_the_base_projector_output(select):
    proj = _projector(select=select)
    proj.moe_bypass = True
    image, text, mask = _inputs()
    plain = build_vision_projector(
        SimpleNamespace(mm_projector_type="mlp2x_gelu", mm_hidden_size=D, hidden_size=C)
    )
    plain.double().load_state_dict(proj.state_dict(), strict=False)
    tokens = plain(image).visual_tokens
    expected = tokens if select == "cls_patch" else tokens[:, 1:]
    out = proj(image, text_embeds=text, text_mask=mask)
    assert torch.equal(out.visual_tokens, expected)
    assert out.metrics == {} and out.aux_loss is None


def test_routing_metric_is_detached_probabilities_per_sample_and_nothing_is_kept_on_the_module():
    proj = _projector(moe_top_k=2)
    image, text, mask = _inputs()
    before = dict(vars(proj))
    out = proj(image, text_embeds=text, text_mask=mask)
    weights = out.metrics[ROUTING_METRIC]
    assert isinstance(out, ProjectorOutput)
    assert weights.shape == (B, E) and not weights.requires_grad
    assert torch.allclose(weights.sum(-1), torch.ones(B, dtype=torch.float64))
    assert vars(proj).keys() == before.keys()


def test_aux_loss_is_none_when_its_coefficient_is_zero():
    proj = _projector()
    image, text, mask = _inputs()
    assert proj(image, text_embeds=text, text_mask=mask).aux_loss is None


def test_aux_loss_is_scaled_positive_and_trains_the_router():
    proj = _projector(moe_aux_loss_coef=0.01)
    image, text, mask = _inputs()
    out = proj(image, text_embeds=text, text_mask=mask)
    expected = 0.01 * load_balancing_loss(out.metrics[ROUTING_METRIC])
    assert out.aux_loss.dim() == 0 and out.aux_loss.item() > 0
    assert torch.allclose(out.aux_loss.detach(), expected)
    out.aux_loss.backward()
    assert proj.moe.router.gate.weight.grad.abs().sum() > 0


def test_load_balancing_loss_is_one_when_balanced_and_num_experts_when_collapsed():
    balanced = torch.eye(E, dtype=torch.float64)
    collapsed = torch.zeros(E, E, dtype=torch.float64)
    collapsed[:, 0] = 1
    assert load_balancing_loss(balanced).item() == pytest.approx(1.0)
    assert load_balancing_loss(collapsed).item() == pytest.approx(E)


def test_bfloat16_projector_gives_finite_bfloat16_output():
    proj = _projector(moe_top_k=2).to(torch.bfloat16)
    image, text, mask = _inputs()
    out = proj(image.bfloat16(), text_embeds=text.bfloat16(), text_mask=mask)
    tokens = out.visual_tokens
    assert tokens.dtype == torch.bfloat16 and torch.isfinite(tokens.float()).all()
    assert torch.allclose(out.metrics[ROUTING_METRIC].float().sum(-1), torch.ones(B), atol=1e-2)
