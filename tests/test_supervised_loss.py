"""Training loss from supervised positions only: same value and gradients as the LLM's full-logit loss."""

from __future__ import annotations

import pytest
import torch

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.model.supervised_loss import supports_supervised_loss
from llava.tiny import build_tiny_llava


def _batch(vocab: int, image_size: int, seed: int = 0):
    """Two right-padded rows with an image sentinel, a masked prompt and a short supervised answer."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab - 1, (2, 12), generator=gen)
    ids[:, 1] = IMAGE_TOKEN_INDEX
    attention = torch.ones_like(ids)
    attention[1, 9:] = 0  # row 1 is padded
    labels = ids.clone()
    labels[:, :7] = IGNORE_INDEX  # prompt (and the image) unsupervised
    labels[attention == 0] = IGNORE_INDEX
    images = torch.randn(2, 3, image_size, image_size, generator=gen)
    return {"input_ids": ids, "attention_mask": attention, "labels": labels, "images": images}


def _loss_and_grads(model, batch, supervised: bool, **kwargs):
    model._supervised_loss_ok = supervised
    model.zero_grad()
    out = model(**batch, **kwargs)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("llm,projector", [("qwen2", "mlp2x_gelu"), ("llama", "parrot_moe")])
def test_supervised_loss_matches_full_logits(tiny_assets, llm, projector):
    model, _, processor = build_tiny_llava(tiny_assets, llm=llm, mm_projector_type=projector)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    batch = _batch(model.config.text_config.vocab_size, processor.crop_size["height"])
    full, full_grads = _loss_and_grads(model, batch, supervised=False)
    fast, fast_grads = _loss_and_grads(model, batch, supervised=True)
    assert full.logits is not None and fast.logits is None
    torch.testing.assert_close(fast.loss, full.loss, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == full_grads.keys() and len(full_grads) > 10
    for name, grad in full_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_supervised_loss_under_gradient_accumulation_divides_by_num_items(tiny_assets):
    model, _, processor = build_tiny_llava(tiny_assets, llm="llama")
    model.train()
    batch = _batch(model.config.text_config.vocab_size, processor.crop_size["height"], seed=1)
    total = torch.tensor(40)  # supervised tokens over all accumulated micro-batches
    full, _ = _loss_and_grads(model, batch, supervised=False, num_items_in_batch=total)
    fast, _ = _loss_and_grads(model, batch, supervised=True, num_items_in_batch=total)
    torch.testing.assert_close(fast.loss, full.loss, rtol=1e-5, atol=1e-6)
    mean, _ = _loss_and_grads(model, batch, supervised=True)
    supervised = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(fast.loss, mean.loss * supervised / 40, rtol=1e-5, atol=1e-6)


def test_eval_mode_returns_full_logits(tiny_assets):
    model, _, processor = build_tiny_llava(tiny_assets, llm="qwen2")
    batch = _batch(model.config.text_config.vocab_size, processor.crop_size["height"])
    with torch.no_grad():
        out = model.eval()(**batch)
    assert out.logits.shape[-1] == model.config.text_config.vocab_size and out.loss is not None


def test_backbones_that_transform_logits_keep_the_full_path(tiny_assets):
    model, _, _ = build_tiny_llava(tiny_assets, llm="qwen2")
    assert supports_supervised_loss(model.language_model)
    model.language_model.config.final_logit_softcapping = 30.0
    assert not supports_supervised_loss(model.language_model)
    model.language_model.config.final_logit_softcapping = None
    model.language_model.config.logits_scaling = 4.0
    assert not supports_supervised_loss(model.language_model)
