"""`build_tiny_assets` / `python -m llava.tiny build`: four folders that load like hub checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoTokenizer,
    ChineseCLIPVisionModel,
    CLIPVisionModel,
    SiglipVisionModel,
)

from llava.tiny import ASSET_NAMES, build_tiny_assets
from llava.tiny.__main__ import main as cli_main
from llava.tiny.build import MARKER_FILE, _write_atomically

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets(tiny_assets) -> dict[str, Path]:
    """The session's tiny assets (tests/conftest.py builds them with `build_tiny_assets(tmp, seed=0)`)."""
    return tiny_assets


@pytest.fixture(scope="module")
def llms(assets) -> dict[str, tuple[torch.nn.Module, object, dict]]:
    """name -> (model, tokenizer, loading info), each loaded once from its folder with the Auto classes."""
    loaded = {}
    for name in ("qwen2", "llama"):
        model, info = AutoModelForCausalLM.from_pretrained(assets[name], output_loading_info=True)
        loaded[name] = (model, AutoTokenizer.from_pretrained(assets[name]), info)
    return loaded


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _assert_same_weights(left: Path, right: Path) -> None:
    a, b = _weights(left), _weights(right)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_build_returns_the_five_asset_folders(assets):
    assert set(assets) == set(ASSET_NAMES) == {"qwen2", "llama", "clip", "chinese_clip", "siglip"}
    assert all(folder.is_dir() and folder.name == name for name, folder in assets.items())


@pytest.mark.parametrize(("name", "model_type"), [("qwen2", "qwen2"), ("llama", "llama")])
def test_llm_folder_loads_with_auto_classes_and_no_missing_weights(assets, llms, name, model_type):
    model, tokenizer, info = llms[name]
    assert model.config.model_type == model_type == AutoConfig.from_pretrained(assets[name]).model_type
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.dtype == torch.float32
    assert model.config.vocab_size == len(tokenizer)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied


@pytest.mark.parametrize("name", ["qwen2", "llama"])
def test_llm_has_the_default_tiny_sizes(assets, name):
    config = AutoConfig.from_pretrained(assets[name])
    sizes = (
        config.hidden_size,
        config.intermediate_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.max_position_embeddings,
    )
    assert sizes == (64, 128, 2, 4, 2, 4096)


def test_saved_qwen2_tokenizer_reproduces_the_pinned_ids_and_specials(llms):
    tokenizer = llms["qwen2"][1]
    pinned = [125074, 1225, 3732, 312, 968, 72, 53705, 404, 30]  # as in test_tokenizers.py
    assert tokenizer("Şeklin rengi nedir?", add_special_tokens=False)["input_ids"] == pinned
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id) == (151645, 151643, None)
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") == 151644
    assert tokenizer.model_max_length == 4096
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False).startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    )


def test_saved_llama_tokenizer_keeps_the_chat_template_and_a_pad_that_is_not_eos(llms):
    tokenizer = llms["llama"][1]
    assert len(tokenizer) == 49152
    assert (tokenizer.pad_token, tokenizer.eos_token) == ("<|endoftext|>", "<|im_end|>")
    assert "You are a helpful AI assistant named SmolLM" in tokenizer.chat_template


@pytest.mark.parametrize("name", ["qwen2", "llama"])
def test_llm_generates_greedily_until_eos_with_its_chat_template(llms, name):
    model, tokenizer, _ = llms[name]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What colour?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    first = model.generate(**prompt, max_new_tokens=4)
    second = model.generate(**prompt, max_new_tokens=4)
    assert first.shape[1] > prompt["input_ids"].shape[1]
    assert torch.equal(first, second)  # do_sample=False in generation_config.json
    assert tokenizer.eos_token_id in (
        [model.generation_config.eos_token_id]
        if isinstance(model.generation_config.eos_token_id, int)
        else model.generation_config.eos_token_id
    )


def test_clip_gives_cls_plus_16_patch_tokens(assets):
    processor = AutoImageProcessor.from_pretrained(assets["clip"])
    model = CLIPVisionModel.from_pretrained(assets["clip"])
    pixels = processor(Image.new("RGB", (40, 50), (255, 0, 0)), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    assert model(pixel_values=pixels).last_hidden_state.shape == (1, 1 + 16, 64)


def test_clip_processor_normalises_with_clip_mean_and_std(assets):
    processor = AutoImageProcessor.from_pretrained(assets["clip"])
    pixels = processor(Image.new("RGB", (32, 32), (255, 0, 0)), return_tensors="pt")["pixel_values"]
    expected = torch.tensor(
        [(1 - 0.48145466) / 0.26862954, -0.4578275 / 0.26130258, -0.40821073 / 0.27577711]
    )
    assert torch.allclose(pixels[0, :, 16, 16], expected, atol=1e-5)


def test_chinese_clip_gives_cls_plus_16_patch_tokens_from_a_square_resize(assets):
    processor = AutoImageProcessor.from_pretrained(assets["chinese_clip"])
    model = ChineseCLIPVisionModel.from_pretrained(assets["chinese_clip"])
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 4, 20))  # a red strip at the left edge: a centre crop would cut it off
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32) and pixels[0, 0, 16, 0] > 1.0
    assert model(pixel_values=pixels).last_hidden_state.shape == (1, 1 + 16, 64)


def test_siglip_gives_16_patch_tokens_in_minus_one_to_one(assets):
    processor = AutoImageProcessor.from_pretrained(assets["siglip"])
    model = SiglipVisionModel.from_pretrained(assets["siglip"])
    pixels = processor(Image.new("RGB", (40, 50), (255, 0, 0)), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    assert torch.allclose(pixels[0, :, 16, 16], torch.tensor([1.0, -1.0, -1.0]))
    assert model(pixel_values=pixels).last_hidden_state.shape == (1, 16, 64)


def test_image_processors_load_without_a_torchvision_warning(assets, caplog):
    with caplog.at_level("WARNING"):
        for name in ("clip", "chinese_clip", "siglip"):
            AutoImageProcessor.from_pretrained(assets[name])
    assert not [record for record in caplog.records if "torchvision" in record.getMessage()]


def test_same_seed_gives_identical_weights(assets, tmp_path):
    again = build_tiny_assets(tmp_path, seed=0)
    for name in ASSET_NAMES:
        _assert_same_weights(assets[name], again[name])


def test_another_seed_gives_other_weights(assets, tmp_path):
    other = build_tiny_assets(tmp_path, seed=1)
    for name in ASSET_NAMES:
        first, second = _weights(assets[name]), _weights(other[name])
        assert any(not torch.equal(first[key], second[key]) for key in first), name


def test_building_twice_keeps_the_complete_folders(assets):
    before = {name: (folder / "model.safetensors").stat().st_ino for name, folder in assets.items()}
    again = build_tiny_assets(assets["qwen2"].parent, seed=0)
    assert again == assets
    assert {name: (folder / "model.safetensors").stat().st_ino for name, folder in again.items()} == before


def test_force_rewrites_the_folders_with_the_same_weights(assets, tmp_path):
    copied = Path(shutil.copytree(assets["clip"].parent, tmp_path / "assets"))
    inode = (copied / "clip" / "model.safetensors").stat().st_ino
    (copied / "clip" / "stray.txt").write_text("left over")
    forced = build_tiny_assets(copied, seed=0, force=True)
    assert not (forced["clip"] / "stray.txt").exists()
    assert (forced["clip"] / "model.safetensors").stat().st_ino != inode
    for name in ASSET_NAMES:
        _assert_same_weights(assets[name], forced[name])


def test_changed_vision_sizes_rebuild_only_the_vision_folders(assets, tmp_path):
    first = {name: tmp_path / name for name in ASSET_NAMES}
    shutil.copytree(assets["clip"].parent, tmp_path, dirs_exist_ok=True)
    inodes = {name: (folder / "model.safetensors").stat().st_ino for name, folder in first.items()}
    second = build_tiny_assets(tmp_path, seed=0, vision_layers=1)
    changed = {
        name
        for name, folder in second.items()
        if (folder / "model.safetensors").stat().st_ino != inodes[name]
    }
    assert changed == {"clip", "chinese_clip", "siglip"}
    assert AutoConfig.from_pretrained(second["clip"]).num_hidden_layers == 1


def test_folder_not_written_by_the_builder_is_not_overwritten(tmp_path):
    (tmp_path / "qwen2").mkdir()
    (tmp_path / "qwen2" / "weights.bin").write_text("somebody's checkpoint")
    with pytest.raises(FileExistsError, match="--force"):
        build_tiny_assets(tmp_path)
    assert (tmp_path / "qwen2" / "weights.bin").read_text() == "somebody's checkpoint"


def test_failed_write_leaves_no_folder_behind(tmp_path):
    def write_then_fail(out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _write_atomically(tmp_path / "clip", {"asset": "clip"}, write_then_fail)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 66}, "--hidden-size .* --heads"),
        ({"image_size": 30}, "--image-size .* --patch-size"),
        ({"layers": 0}, "--layers must be a positive integer"),
    ],
)
def test_invalid_sizes_name_the_flag(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_assets(tmp_path, **overrides)


def test_unknown_size_name_is_rejected(tmp_path):
    with pytest.raises(TypeError, match="hidden_sise"):
        build_tiny_assets(tmp_path, hidden_sise=32)


def test_cli_builds_loadable_assets_with_overridden_sizes(tmp_path):
    command = [
        sys.executable, "-m", "llava.tiny", "build", "--out", str(tmp_path), "--seed", "3",
        "--hidden-size", "96", "--intermediate-size", "160", "--layers", "3", "--heads", "6",
        "--vision-hidden-size", "48", "--vision-layers", "1", "--image-size", "48", "--patch-size", "16",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"qwen2: {tmp_path / 'qwen2'}" in result.stdout
    qwen2 = AutoConfig.from_pretrained(tmp_path / "qwen2")
    assert (qwen2.hidden_size, qwen2.intermediate_size, qwen2.num_hidden_layers) == (96, 160, 3)
    assert (qwen2.num_attention_heads, qwen2.num_key_value_heads) == (6, 3)
    siglip = SiglipVisionModel.from_pretrained(tmp_path / "siglip")
    tokens = siglip(pixel_values=torch.zeros(1, 3, 48, 48)).last_hidden_state
    assert tokens.shape == (1, 9, 48)
    assert json.loads((tmp_path / "clip" / MARKER_FILE).read_text())["seed"] == 3


def test_cli_reports_invalid_sizes_with_exit_code_2(tmp_path, capsys):
    assert cli_main(["build", "--out", str(tmp_path), "--hidden-size", "66"]) == 2
    assert "--hidden-size (66) must be divisible by --heads (4)" in capsys.readouterr().err
