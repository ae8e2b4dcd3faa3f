"""Sequence packing (`--packing`): a packed batch trains exactly like the same samples unpacked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.modeling_flash_attention_utils import (
    _is_packed_sequence,
    prepare_fa_kwargs_from_position_ids,
)

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.conversation import get_conv_template
from llava.data.collator import DataCollatorForPackedDataset, DataCollatorForSupervisedDataset
from llava.data.dataset import DataConfig, LazySupervisedDataset
from llava.data.packing import PackedDataset, first_fit_decreasing, plan_packs
from llava.model.multimodal_projector import ROUTING_METRIC
from llava.tiny import build_tiny_llava
from llava.train.preflight import LaunchError, check_packing_attention, check_training_args
from llava.train.trainer import real_token_counts

PAD = 0


def make_samples(vocab: int, image_size: int, seed: int = 0) -> list[dict]:
    """Eight samples of different lengths and prompts: six with an image (one with two), two text-only."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for index, (prompt, answer, images) in enumerate(
        [(6, 3, 1), (11, 5, 1), (4, 2, 0), (9, 4, 2), (7, 6, 1), (13, 2, 0), (5, 3, 1), (8, 4, 1)]
    ):
        ids = torch.randint(5, vocab, (prompt + answer,), generator=gen)
        ids[1 : 1 + images] = IMAGE_TOKEN_INDEX
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[prompt:] = ids[prompt:]
        pixels = torch.randn(images, 3, image_size, image_size, generator=gen) if images else None
        samples.append({"input_ids": ids, "labels": labels, "images": pixels, "lang": ["en", "zh"][index % 2]})
    return samples


PACKS = [[0, 1, 2, 3], [4, 5, 6, 7]]


def packed_batch(samples: list[dict]) -> dict:
    return DataCollatorForPackedDataset(PAD)([[samples[i] for i in pack] for pack in PACKS])


def unpacked_batch(samples: list[dict]) -> dict:
    return DataCollatorForSupervisedDataset(PAD)(samples)


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "image_langs"}


def loss_and_grads(model, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model(**model_inputs(batch)).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def tiny_model(tiny_assets, llm: str, projector: str):
    model, _, processor = build_tiny_llava(tiny_assets, llm=llm, mm_projector_type=projector)
    return model, processor.crop_size["height"]


@pytest.mark.parametrize("llm", ["qwen2", "llama"])
@pytest.mark.parametrize("projector", ["mlp2x_gelu", "parrot_moe"])
def test_two_packed_rows_give_the_loss_and_gradients_of_eight_unpacked_rows(tiny_assets, llm, projector):
    model, image_size = tiny_model(tiny_assets, llm, projector)
    model.train()
    samples = make_samples(model.config.text_config.vocab_size, image_size)
    packed, unpacked = packed_batch(samples), unpacked_batch(samples)
    assert packed["input_ids"].shape[0] == 2 and unpacked["input_ids"].shape[0] == 8
    # The trainer's num_items_in_batch (labels[..., 1:] != IGNORE) is the same count.
    assert (packed["labels"][:, 1:] != IGNORE_INDEX).sum() == (unpacked["labels"][:, 1:] != IGNORE_INDEX).sum()
    loss_packed, grads_packed = loss_and_grads(model, packed)
    loss_unpacked, grads_unpacked = loss_and_grads(model, unpacked)
    torch.testing.assert_close(loss_packed, loss_unpacked, rtol=0, atol=1e-5)
    assert grads_packed.keys() == grads_unpacked.keys() and len(grads_packed) > 10
    for name, grad in grads_unpacked.items():
        torch.testing.assert_close(grads_packed[name], grad, rtol=0, atol=1e-5, msg=name)


def merged_sample_index(model, batch: dict) -> torch.Tensor:
    """(B, L) index of the sample each merged LLM position belongs to (positions restart per sample)."""
    merged = model.prepare_inputs_embeds(
        batch["input_ids"], batch["images"], batch["attention_mask"], batch["labels"], position_ids=batch["position_ids"]
    )
    return (merged.position_ids == 0).cumsum(dim=1)


def test_changing_one_packed_sample_leaves_its_neighbours_logits_unchanged(tiny_assets):
    model, image_size = tiny_model(tiny_assets, "llama", "parrot_moe")
    samples = make_samples(model.config.text_config.vocab_size, image_size)
    changed = [dict(s) for s in samples]
    target = 1  # the second sample of row 0, with neighbours on both sides
    changed[target]["input_ids"] = torch.where(
        samples[target]["input_ids"] == IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX, (samples[target]["input_ids"] + 7) % 100 + 5
    )
    changed[target]["images"] = samples[target]["images"] + 1.0
    before, after = packed_batch(samples), packed_batch(changed)
    with torch.no_grad():
        logits_before = model(**model_inputs(before)).logits
        logits_after = model(**model_inputs(after)).logits
    sample = merged_sample_index(model, before)[0]
    own = sample == 2  # the second sample of row 0
    assert own.any() and (~own).any()
    assert not torch.allclose(logits_before[0, own], logits_after[0, own])
    torch.testing.assert_close(logits_after[0, ~own], logits_before[0, ~own], rtol=0, atol=1e-6)
    torch.testing.assert_close(logits_after[1], logits_before[1], rtol=0, atol=1e-6)


def test_parrot_moe_routing_in_a_packed_row_equals_routing_of_each_sample_alone(tiny_assets):
    model, image_size = tiny_model(tiny_assets, "qwen2", "parrot_moe")
    samples = make_samples(model.config.text_config.vocab_size, image_size)
    with torch.no_grad():
        packed = model(**model_inputs(packed_batch(samples))).projector_metrics[ROUTING_METRIC]
        alone = [
            model(**model_inputs(unpacked_batch([samples[i]]))).projector_metrics[ROUTING_METRIC]
            for pack in PACKS for i in pack if samples[i]["images"] is not None
        ]
    alone = torch.cat(alone)
    assert packed.shape == alone.shape and packed.shape[0] == 7
    assert not torch.allclose(alone[0], alone[1], atol=1e-4)  # different prompts route differently
    torch.testing.assert_close(packed, alone, rtol=0, atol=1e-6)


def flash_reference_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """What flash-attn's varlen path computes, on the CPU: transformers' own packed-sequence detection
    and cumulative lengths from position ids, then causal attention inside each sequence."""
    position_ids = kwargs["position_ids"]
    assert attention_mask is None and _is_packed_sequence(position_ids, query.shape[0])
    (cu_seqlens, _), _ = prepare_fa_kwargs_from_position_ids(position_ids)
    key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    value = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
    out = torch.cat([
        F.scaled_dot_product_attention(query[..., a:b, :], key[..., a:b, :], value[..., a:b, :], is_causal=True, scale=scaling)
        for a, b in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist())
    ], dim=2)
    return out.transpose(1, 2).contiguous(), None


def test_flash_attention_gets_the_packed_rows_as_one_varlen_row(tiny_assets):
    AttentionInterface.register("flash_attention_cpu_reference", flash_reference_attention)
    model, image_size = tiny_model(tiny_assets, "qwen2", "mlp2x_gelu")
    model.train()
    samples = make_samples(model.config.text_config.vocab_size, image_size)
    loss_sdpa, _ = loss_and_grads(model, packed_batch(samples))
    model.language_model.config._attn_implementation = "flash_attention_cpu_reference"
    loss_flash, _ = loss_and_grads(model, packed_batch(samples))
    torch.testing.assert_close(loss_flash, loss_sdpa, rtol=0, atol=1e-5)


def test_packed_rows_are_as_long_as_planned_after_the_image_splice(tiny_assets, tiny_data):
    model, tokenizer, processor = build_tiny_llava(
        tiny_assets, llm="llama", mm_projector_type="parrot_moe", mm_vision_select_feature="cls_patch"
    )
    assert model.num_image_tokens == model.vision_tower.num_patches + 1  # the projector's count, CLS included
    config = DataConfig(template=get_conv_template("qwen_2"), image_folder=str(tiny_data["images"]),
                        image_processor=processor, model_max_length=128, num_image_tokens=model.num_image_tokens)
    dataset = LazySupervisedDataset(str(tiny_data["instructions"]), tokenizer, config)
    packed = PackedDataset(dataset, 128, seed=0, show_progress=False)
    assert sorted(i for pack in packed.packs for i in pack) == list(range(len(dataset))) and len(packed) < len(dataset)
    collate = DataCollatorForPackedDataset(tokenizer.pad_token_id)
    for index in range(len(packed)):
        batch = collate([packed[index]])
        merged = model.prepare_inputs_embeds(batch["input_ids"], batch.get("images"), batch["attention_mask"],
                                             batch["labels"], position_ids=batch["position_ids"])
        assert int(merged.attention_mask.sum()) == packed.pack_length(index) <= 128


def test_packed_collator_restarts_positions_and_masks_each_first_label():
    samples = [
        {"input_ids": torch.tensor([1, 2, 3]), "labels": torch.tensor([1, 2, 3]), "images": None},
        {"input_ids": torch.tensor([4, 5]), "labels": torch.tensor([4, 5]), "images": None},
        {"input_ids": torch.tensor([6, 7, 8, 9]), "labels": torch.tensor([IGNORE_INDEX, 7, 8, 9]), "images": None},
    ]
    batch = DataCollatorForPackedDataset(PAD)([[samples[0], samples[1]], [samples[2]]])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, PAD]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, 3, IGNORE_INDEX, 5], [IGNORE_INDEX, 7, 8, 9, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


def test_image_langs_follow_the_images_in_sentinel_order(tiny_assets):
    samples = make_samples(100, 8)
    langs = [s["lang"] for s in samples for _ in range(0 if s["images"] is None else len(s["images"]))]
    assert packed_batch(samples)["image_langs"] == langs == unpacked_batch(samples)["image_langs"]


def test_real_token_fraction_counts_visual_tokens_and_padding():
    ids = torch.tensor([[5, IMAGE_TOKEN_INDEX, 6, 7], [8, 9, PAD, PAD]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    # row 0: 3 text + 10 visual = 13 positions; row 1: 2; both rows are 13 long
    assert real_token_counts(ids, mask, num_image_tokens=10, max_length=None) == (15, 26)
    assert real_token_counts(ids, mask, num_image_tokens=10, max_length=8) == (10, 16)


def test_first_fit_decreasing_places_each_item_in_the_first_bin_with_room():
    lengths = [5, 4, 3, 3, 2, 2, 1]
    assert first_fit_decreasing(range(7), lengths, capacity=8) == [[0, 2], [1, 3, 6], [4, 5]]


def test_packer_keeps_every_sample_once_within_capacity_and_is_deterministic():
    gen = torch.Generator().manual_seed(0)
    lengths = (torch.randint(20, 400, (503,), generator=gen)).tolist()
    lengths[7] = None  # a sample that cannot be trained on
    packs = plan_packs(lengths, 512, seed=3, window=64, rows_multiple=6)
    assert sorted(i for pack in packs for i in pack) == [i for i, n in enumerate(lengths) if n is not None]
    assert all(sum(lengths[i] for i in pack) <= 512 for pack in packs)
    assert len(packs) % 6 == 0
    assert plan_packs(lengths, 512, seed=3, window=64, rows_multiple=6) == packs
    assert plan_packs(lengths, 512, seed=4, window=64, rows_multiple=6) != packs
    fill = sum(n for n in lengths if n is not None) / (512 * len(packs))
    assert fill > 0.9


def test_packer_keeps_modalities_apart_when_grouping_by_modality():
    lengths = [100] * 10
    groups = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    packs = plan_packs(lengths, 512, seed=0, groups=groups)
    assert all(len({groups[i] for i in pack}) == 1 for pack in packs)
    assert sorted(i for pack in packs for i in pack) == list(range(10))


def test_packing_refuses_samplers_that_order_single_samples(tmp_path):
    from llava.train.arguments import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), packing=True, train_sampling_strategy="group_by_length")
    with pytest.raises(LaunchError, match="--train_sampling_strategy random"):
        check_training_args(args)


def test_packing_refuses_attention_that_cannot_keep_samples_apart(tiny_assets):
    model, _ = tiny_model(tiny_assets, "llama", "mlp2x_gelu")
    check_packing_attention(model)  # sdpa
    model.language_model.config._attn_implementation = "paged|sdpa"
    with pytest.raises(LaunchError, match="--attn_implementation sdpa"):
        check_packing_attention(model)
