"""The data layer: LLaVA JSON/JSONL, bad items logged once and skipped, strict mode, modality batches."""

import json
import logging

import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.conversation import get_conv_template
from llava.data.collator import DataCollatorForSupervisedDataset
from llava.data.dataset import DataConfig, LazySupervisedDataset, SkipLog, load_items
from llava.data.preprocess import BadSample
from llava.train.samplers import modality_grouped_indices


@pytest.fixture(scope="module")
def tokenizer(tiny_assets):
    return AutoTokenizer.from_pretrained(tiny_assets["qwen2"])


@pytest.fixture(scope="module")
def processor(tiny_assets):
    return AutoImageProcessor.from_pretrained(tiny_assets["clip"])


def good(i, image="ok.png", lang="en"):
    return {"id": f"good{i}", "image": image, "lang": lang, "conversations": [
        {"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "Red."}]}


BAD_ITEMS = {
    "missing": ({"id": "missing", "image": "nope.png", "conversations": [
        {"from": "human", "value": "<image>\nx"}, {"from": "gpt", "value": "y"}]}, "missing image file"),
    "corrupt": ({"id": "corrupt", "image": "corrupt.png", "conversations": [
        {"from": "human", "value": "<image>\nx"}, {"from": "gpt", "value": "y"}]}, "corrupt image"),
    "thin": ({"id": "thin", "image": "thin.png", "conversations": [
        {"from": "human", "value": "<image>\nx"}, {"from": "gpt", "value": "y"}]}, "times longer than wide"),
    "no_gpt": ({"id": "no_gpt", "conversations": [{"from": "human", "value": "hi"}]}, "no 'gpt' turn"),
    "unknown_from": ({"id": "unknown_from", "conversations": [
        {"from": "robot", "value": "hi"}, {"from": "gpt", "value": "y"}]}, "unknown 'from'"),
    "marker_no_image": ({"id": "marker_no_image", "conversations": [
        {"from": "human", "value": "<image>\nx"}, {"from": "gpt", "value": "y"}]}, "has no image"),
    "too_many_markers": ({"id": "too_many_markers", "image": "ok.png", "conversations": [
        {"from": "human", "value": "<image><image>\nx"}, {"from": "gpt", "value": "y"}]}, "more '<image>' markers"),
}


@pytest.fixture
def folder(tmp_path):
    Image.new("RGB", (20, 30), "red").save(tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    Image.new("1", (1, 100_000)).save(tmp_path / "thin.png")  # preprocessing would make it 32 x 3.2M
    return tmp_path


def make_dataset(tmp_path, items, tokenizer, processor, strict=False, max_length=256, suffix=".json"):
    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(i) for i in items))
    else:
        path.write_text(json.dumps(items))
    config = DataConfig(template=get_conv_template("qwen_2"), image_folder=str(tmp_path), image_processor=processor,
                        model_max_length=max_length, num_image_tokens=16)
    log = SkipLog(str(tmp_path / "skipped.jsonl"), strict=strict)
    return LazySupervisedDataset(str(path), tokenizer, config, log), log


@pytest.mark.parametrize("case", sorted(BAD_ITEMS))
def test_each_bad_item_is_logged_once_with_its_id_and_skipped(case, folder, tokenizer, processor, caplog):
    item, reason = BAD_ITEMS[case]
    with caplog.at_level(logging.WARNING, logger="llava.data.dataset"):
        dataset, log = make_dataset(folder, [good(0), item, good(1)], tokenizer, processor)
        samples = [dataset[i] for i in range(len(dataset))]
    lines = [r.getMessage() for r in caplog.records if case in r.getMessage()]
    assert len(lines) == 1 and reason in lines[0]
    assert sum(log.summary().values()) == 1
    assert all(s["labels"].ne(IGNORE_INDEX).any() for s in samples)


def test_strict_data_makes_the_first_bad_item_an_error(folder, tokenizer, processor):
    with pytest.raises(BadSample, match="id=no_gpt.*--strict_data"):
        make_dataset(folder, [good(0), BAD_ITEMS["no_gpt"][0]], tokenizer, processor, strict=True)


def test_sample_with_no_supervised_token_after_truncation_is_skipped(folder, tokenizer, processor):
    long_answer = {"id": "long", "image": "ok.png", "conversations": [
        {"from": "human", "value": "<image>\n" + "word " * 200}, {"from": "gpt", "value": "Red."}]}
    dataset, log = make_dataset(folder, [long_answer, good(0)], tokenizer, processor, max_length=100)
    sample = dataset[0]
    assert dict(log.summary()) == {"no supervised tokens left after truncation/masking": 1}
    assert sample["input_ids"].tolist().count(IMAGE_TOKEN_INDEX) == 1
    assert len(sample["input_ids"]) - 1 + 16 <= 100


def test_jsonl_and_comma_separated_files_load(folder, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([good(0)]))
    (tmp_path / "b.jsonl").write_text(json.dumps(good(1)) + "\n" + json.dumps(good(2)) + "\n")
    items = load_items(f"{tmp_path / 'a.json'},{tmp_path / 'b.jsonl'}")
    assert [i["id"] for i in items] == ["good0", "good1", "good2"]


def test_unreadable_data_file_names_the_flag_and_file(tmp_path):
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(ValueError, match="--data_path .*broken.json"):
        load_items(str(tmp_path / "broken.json"))
    with pytest.raises(FileNotFoundError, match="--data_path"):
        load_items(str(tmp_path / "absent.json"))


def test_text_only_items_mix_with_image_items_in_a_batch(folder, tokenizer, processor):
    text_only = {"id": "t", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    dataset, _ = make_dataset(folder, [good(0), text_only, good(1, lang="zh")], tokenizer, processor)
    batch = DataCollatorForSupervisedDataset(tokenizer.pad_token_id)([dataset[i] for i in range(3)])
    assert batch["images"].shape == (2, 3, 32, 32)
    assert (batch["input_ids"] == IMAGE_TOKEN_INDEX).sum() == 2
    assert batch["image_langs"] == ["en", "zh"]
    lengths = batch["attention_mask"].sum(1)
    # right padding: each row ends "<|im_end|>" (supervised) then "\n" (not), then padding
    assert (batch["labels"][torch.arange(3), lengths - 2] != IGNORE_INDEX).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_image_without_marker_gets_one_in_front(folder, tokenizer, processor):
    item = {"id": "x", "image": "ok.png", "conversations": [
        {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "Red."}]}
    dataset, _ = make_dataset(folder, [item], tokenizer, processor)
    assert dataset[0]["input_ids"].tolist().count(IMAGE_TOKEN_INDEX) == 1


def test_pad_aspect_ratio_keeps_the_whole_image(tiny_assets, processor):
    from types import SimpleNamespace

    from llava.mm_utils import process_images

    wide = Image.new("RGB", (64, 16), (255, 0, 0))
    padded = process_images([wide], processor, SimpleNamespace(image_aspect_ratio="pad"))
    cropped = process_images([wide], processor, SimpleNamespace(image_aspect_ratio="square"))
    # padding shows background rows above the red band; a centre crop is red everywhere
    assert not torch.allclose(padded[0, :, 0, :], padded[0, :, 16, :])
    assert torch.allclose(cropped[0, :, 0, :], cropped[0, :, 16, :])


def test_modality_grouped_batches_are_pure_except_the_leftover_batch():
    lengths = [5, -3, 7, -2, 9, 4, -8, -6, 3, 1, -1, -4]
    order = modality_grouped_indices(lengths, batch_size=2, world_size=2, generator=torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(len(lengths)))
    for start in range(0, len(order) - 4, 4):  # the last global batch holds both modalities' leftovers
        signs = {lengths[i] > 0 for i in order[start : start + 4]}
        assert len(signs) == 1
