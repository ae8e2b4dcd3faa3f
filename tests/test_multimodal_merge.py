"""The vectorised image splice against a per-sample reference."""

import pytest
import torch

from llava.constants import IGNORE_INDEX
from llava.constants import IMAGE_TOKEN_INDEX as IMG
from llava.model.multimodal_merge import merge_image_features, prompt_token_mask


def reference_merge(ids, embeds, feats, mask, labels):
    """Per-sample loop: the obvious implementation, unpadded outputs."""
    out_e, out_l, k = [], [], 0
    for b in range(ids.shape[0]):
        e_parts, l_parts = [], []
        for t in range(ids.shape[1]):
            if not mask[b, t]:
                continue
            if ids[b, t] == IMG:
                e_parts.append(feats[k])
                l_parts += [IGNORE_INDEX] * feats.shape[1]
                k += 1
            else:
                e_parts.append(embeds[b, t : t + 1])
                l_parts.append(int(labels[b, t]))
        out_e.append(torch.cat(e_parts))
        out_l.append(l_parts)
    return out_e, out_l


def make_batch():
    torch.manual_seed(0)
    ids = torch.tensor([[5, IMG, 6, 7, 0, 0], [IMG, 8, IMG, 9, 10, 11], [1, 2, 3, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    labels = torch.where(mask.bool() & (ids != IMG), ids, IGNORE_INDEX)
    embeds = torch.randn(3, 6, 4)
    feats = torch.randn(3, 2, 4)  # three images, two tokens each
    return ids, embeds, feats, mask, labels


@pytest.mark.parametrize("side", ["right", "left"])
def test_splice_matches_per_sample_reference(side):
    ids, embeds, feats, mask, labels = make_batch()
    merged = merge_image_features(ids, embeds, feats, mask, labels, padding_side=side)
    ref_e, ref_l = reference_merge(ids, embeds, feats, mask, labels)
    for b, (e, lab) in enumerate(zip(ref_e, ref_l)):
        keep = merged.attention_mask[b].bool()
        assert torch.equal(merged.inputs_embeds[b][keep], e)
        assert merged.labels[b][keep].tolist() == lab
        assert torch.equal(merged.position_ids[b][keep], torch.arange(len(lab)))
        assert (merged.inputs_embeds[b][~keep] == 0).all()
    lengths = merged.attention_mask.sum(1).tolist()
    assert lengths == [len(x) for x in ref_l] == [5, 8, 3]
    if side == "left":
        assert merged.attention_mask[:, -1].all()
    else:
        assert merged.attention_mask[:, 0].all()


def test_text_only_samples_mix_with_image_samples():
    ids, embeds, feats, mask, labels = make_batch()
    merged = merge_image_features(ids, embeds, feats, mask, labels)
    assert merged.labels[2, :3].tolist() == [1, 2, 3]


def test_image_positions_are_never_supervised():
    ids, embeds, feats, mask, labels = make_batch()
    merged = merge_image_features(ids, embeds, feats, mask, labels)
    # sample 1 starts with an image: its first two positions carry image features
    assert merged.labels[1, :2].tolist() == [IGNORE_INDEX, IGNORE_INDEX]
    assert torch.equal(merged.inputs_embeds[1, :2], feats[1])


def test_truncates_to_max_length_after_expansion():
    ids, embeds, feats, mask, labels = make_batch()
    merged = merge_image_features(ids, embeds, feats, mask, labels, max_length=4)
    assert merged.inputs_embeds.shape[1] == 4
    assert merged.attention_mask.sum(1).tolist() == [4, 4, 3]
    assert torch.equal(merged.inputs_embeds[1, 2], embeds[1, 1])


def test_image_count_mismatch_is_an_error():
    ids, embeds, feats, mask, labels = make_batch()
    with pytest.raises(ValueError, match="3 image tokens .* but 2 images"):
        merge_image_features(ids, embeds, feats[:2], mask, labels)


def test_gradients_flow_into_image_features():
    ids, embeds, feats, mask, labels = make_batch()
    feats.requires_grad_(True)
    merge_image_features(ids, embeds, feats, mask, labels).inputs_embeds.sum().backward()
    assert torch.equal(feats.grad, torch.ones_like(feats))


def test_prompt_mask_excludes_answers_padding_and_sentinels():
    ids = torch.tensor([[IMG, 4, 5, 6, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 6, IGNORE_INDEX]])
    assert prompt_token_mask(ids, mask, labels).tolist() == [[False, True, True, False, False]]
    assert prompt_token_mask(ids, mask, None).tolist() == [[False, True, True, True, False]]
