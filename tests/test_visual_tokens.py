"""`llava.model.visual_tokens`: the spliced length equals what the merge produces, for every kind of
projector (one token per patch, CLS dropped, a fixed number of queries), and packing's plan, the
dataset's truncation budget, the trainer's token counts and serving's context check all agree with it."""

import pytest
import torch
from conftest import build_tiny_llava
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import pargo  # noqa: F401  (registers the plugin projectors; the core never imports them)
import parrot_moe  # noqa: F401
from llava.constants import IMAGE_TOKEN_INDEX
from llava.conversation import get_conv_template
from llava.data.collator import DataCollatorForSupervisedDataset
from llava.data.dataset import DataConfig, LazySupervisedDataset
from llava.model.visual_tokens import image_positions, merged_length, text_budget, token_widths
from llava.serve.engine import ChatEngine
from llava.train.trainer import real_token_counts

PARGO = {"pargo_layers": 1, "pargo_hidden_size": 32, "pargo_heads": 4,
         "pargo_num_partial_queries": 8, "pargo_num_global_queries": 2}
PROJECTORS = {
    "mlp2x_gelu": {"mm_projector_type": "mlp2x_gelu"},
    "mlp2x_gelu cls_patch": {"mm_projector_type": "mlp2x_gelu", "mm_vision_select_feature": "cls_patch"},
    "parrot_moe": {"mm_projector_type": "parrot_moe"},
    "pargo": {"mm_projector_type": "pargo", **PARGO},
}
_MODELS: dict = {}


def tiny(assets, name):
    if name not in _MODELS:
        _MODELS[name] = build_tiny_llava(assets, **PROJECTORS[name])
    return _MODELS[name]


def test_each_projector_counts_its_own_tokens(tiny_assets):
    counts = {name: tiny(tiny_assets, name)[0].num_image_tokens for name in PROJECTORS}
    patches = tiny(tiny_assets, "pargo")[0].vision_tower.num_patches
    # one per patch; the CLS too under cls_patch; parrot_moe routes on the CLS and drops it; pargo's queries
    assert counts == {"mlp2x_gelu": patches, "mlp2x_gelu cls_patch": patches + 1, "parrot_moe": patches, "pargo": 10}


def test_widths_lengths_and_budget_on_a_hand_made_batch():
    ids = torch.tensor([[5, IMAGE_TOKEN_INDEX, 6, 0], [IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX, 7, 8]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert token_widths(ids, 3, mask).tolist() == [[1, 3, 1, 0], [3, 3, 1, 1]]
    assert merged_length(ids, 3, mask).tolist() == [5, 8]
    assert merged_length(ids, 3, mask, max_length=6).tolist() == [5, 6]
    assert merged_length([5, IMAGE_TOKEN_INDEX, 6], 0) == 2  # a projector may emit no token at all
    assert image_positions(2, 3) == 6 and image_positions(0, 3) == 0
    assert text_budget(10, 2, 3) == 6 and text_budget(10, 0, 3) == 10 and text_budget(4, 2, 3) == 0
    with pytest.raises(ValueError, match="tokens_per_image"):
        token_widths(ids, -1)
    with pytest.raises(ValueError, match="attention_mask goes with a tensor"):
        merged_length([5, 6], 3, attention_mask=torch.ones(2))


@st.composite
def batches(draw):
    """Right- or left-padded rows of random text with 0..3 sentinels each, and a length cap (or none)."""
    rows = []
    for _ in range(draw(st.integers(1, 3))):
        text = draw(st.lists(st.integers(1, 50), min_size=1, max_size=12))
        for _ in range(draw(st.integers(0, 3))):
            text.insert(draw(st.integers(0, len(text))), IMAGE_TOKEN_INDEX)
        rows.append(text)
    width = max(len(r) for r in rows)
    side = draw(st.sampled_from(["right", "left"]))
    pad = [[0] * (width - len(r)) for r in rows]
    ids = [r + p if side == "right" else p + r for r, p in zip(rows, pad)]
    mask = [[1] * len(r) + [0] * len(p) if side == "right" else [0] * len(p) + [1] * len(r) for r, p in zip(rows, pad)]
    max_length = draw(st.one_of(st.none(), st.integers(1, 60)))
    return torch.tensor(ids), torch.tensor(mask), side, max_length


@pytest.mark.parametrize("name", list(PROJECTORS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=batches())
def test_merged_length_is_the_length_the_merge_produces(tiny_assets, name, batch):
    model, _, _ = tiny(tiny_assets, name)
    ids, mask, side, max_length = batch
    images = int((ids == IMAGE_TOKEN_INDEX).sum())
    pixels = torch.randn(images, 3, 32, 32) if images else None
    model.config.tokenizer_model_max_length = max_length
    try:
        with torch.no_grad():
            merged = model.prepare_inputs_embeds(ids, pixels, mask, padding_side=side)
    finally:
        model.config.tokenizer_model_max_length = None
    expected = merged_length(ids, model.num_image_tokens, mask, max_length=max_length)
    # An independent count: text tokens plus what the projector really emitted per image, capped.
    emitted = merged.projector_output.visual_tokens.shape[1] if images else 0
    by_hand = [sum(emitted if t == IMAGE_TOKEN_INDEX else 1 for t, m in zip(r, k) if m) for r, k in
               zip(ids.tolist(), mask.tolist())]
    assert expected.tolist() == [n if max_length is None else min(n, max_length) for n in by_hand]
    unpadded = [[t for t, m in zip(r, k) if m] for r, k in zip(ids.tolist(), mask.tolist())]
    assert [merged_length(r, model.num_image_tokens, max_length=max_length) for r in unpadded] == expected.tolist()
    assert merged.attention_mask.sum(dim=1).tolist() == expected.tolist()
    assert merged.inputs_embeds.shape[1] == int(expected.max())
    assert real_token_counts(ids, mask, model.num_image_tokens, max_length)[0] == int(expected.sum())


@pytest.mark.parametrize("name", ["mlp2x_gelu cls_patch", "pargo"])
def test_dataset_lengths_and_budget_agree_with_the_merge(tiny_assets, tiny_data, name):
    model, tokenizer, processor = tiny(tiny_assets, name)
    n = model.num_image_tokens
    template = get_conv_template("qwen_2")

    def dataset(max_length):
        config = DataConfig(template, str(tiny_data["images"]), processor, model_max_length=max_length,
                            num_image_tokens=n)
        return LazySupervisedDataset(str(tiny_data["instructions"]), tokenizer, config)

    full = dataset(4096)
    lengths = full.sequence_lengths(show_progress=False)
    samples = [full[i] for i in range(4)] + [full[len(full) - 1]]  # image samples and the text-only one
    batch = DataCollatorForSupervisedDataset(tokenizer.pad_token_id)(samples)
    with torch.no_grad():
        merged = model.prepare_inputs_embeds(batch["input_ids"], batch.get("images"), batch["attention_mask"])
    assert merged.attention_mask.sum(dim=1).tolist() == lengths[:4] + lengths[-1:]
    # The truncation budget leaves exactly max_length positions once the image is spliced in.
    cap = lengths[0] - 2
    cut = dataset(cap)[0]
    assert len(cut["input_ids"]) == text_budget(cap, 1, n)
    with torch.no_grad():
        spliced = model.prepare_inputs_embeds(cut["input_ids"][None], cut["images"], None)
    assert spliced.inputs_embeds.shape[1] == cap == merged_length(cut["input_ids"], n)


@pytest.mark.parametrize("name", ["parrot_moe", "pargo"])
def test_serving_admission_counts_what_the_merge_produces(tiny_assets, name):
    model, tokenizer, processor = tiny(tiny_assets, name)
    engine = ChatEngine(tokenizer, model.eval(), processor, context_len=10_000, name=name)
    for image in (None, Image.new("RGB", (32, 32), "red")):
        prepared = engine.prepare("Hi there", image=image)
        ids = torch.tensor([prepared.input_ids])
        with torch.no_grad():
            merged = model.prepare_inputs_embeds(ids, prepared.pixel_values, None, padding_side="left")
        assert prepared.prompt_tokens == merged.inputs_embeds.shape[1] == merged_length(prepared.input_ids, model.num_image_tokens)
