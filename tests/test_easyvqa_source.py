"""easy-VQA source data: reading questions and the colour/shape of each image from its pixels."""

from __future__ import annotations

import pytest

from playground.easyvqa.source import SPLITS, image_file, image_ids, load_questions, read_image_attributes
from playground.easyvqa.translations import YES, load_table


def _labels_named_by_questions(split: str) -> dict[int, dict[str, set[str]]]:
    """Colour and shape of each image as easy-VQA's own questions and answers state them."""
    table = load_table()
    labels: dict[int, dict[str, set[str]]] = {}
    for question in load_questions(split):
        template, color, shape = table.match_english(question.text)
        found = labels.setdefault(question.image_id, {"color": set(), "shape": set()})
        if template.kind in ("color", "shape"):
            found[template.kind].add(question.answer)
            found["color"].update([color] if color else [])
            found["shape"].update([shape] if shape else [])
        elif (question.answer == YES) != template.negated:  # the named colour or shape is present
            found["color" if template.kind == "exists_color" else "shape"].add(color or shape)
    return labels


@pytest.mark.parametrize("split", SPLITS)
def test_pixel_attributes_agree_with_every_label_easy_vqa_states(split):
    labels = _labels_named_by_questions(split)
    checked = 0
    for image_id in image_ids(split):
        color, shape = read_image_attributes(image_file(split, image_id))
        stated = labels.get(image_id, {"color": set(), "shape": set()})
        assert stated["color"] <= {color}, (split, image_id, color, stated)
        assert stated["shape"] <= {shape}, (split, image_id, shape, stated)
        checked += bool(stated["color"]) + bool(stated["shape"])
    assert checked > 1.5 * len(image_ids(split))  # most images have both attributes stated


def test_splits_have_the_documented_sizes():
    assert (len(image_ids("train")), len(image_ids("test"))) == (4000, 1000)
    assert (len(load_questions("train")), len(load_questions("test"))) == (38575, 9673)


def test_unknown_split_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="train"):
        image_ids("validation")
