"""Chinese-CLIP vision towers (`chinese_clip_vision_model`, the paper's Fig 1 comparison) work where CLIP does."""

from __future__ import annotations

import json

import torch
from training_helpers import common_flags
from transformers import ChineseCLIPConfig, ChineseCLIPImageProcessorPil, ChineseCLIPModel

from llava.constants import MM_PROJECTOR_FILE
from llava.model.multimodal_encoder.vision_tower import load_vision_config
from llava.tiny import build_tiny_llava
from llava.train.train import train


def test_stage1_trains_the_projector_on_a_chinese_clip_tower(tiny_assets, tiny_data, tmp_path):
    towers = ["--vision_tower", str(tiny_assets["chinese_clip"]), "--model_name_or_path", str(tiny_assets["llama"])]
    trainer = train(common_flags(tiny_assets, tiny_data, tmp_path, stage=1, extra=towers))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    saved = torch.load(tmp_path / MM_PROJECTOR_FILE, weights_only=True)
    trained = trainer.model.mm_projector.state_dict()
    assert all(torch.equal(saved[f"model.mm_projector.{name}"], value) for name, value in trained.items())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["vision_config"]["model_type"] == "chinese_clip_vision_model"


def test_chinese_clip_cls_row_is_a_visual_token_under_cls_patch(tiny_assets):
    model, _, processor = build_tiny_llava(tiny_assets, llm="llama", vision="chinese_clip", mm_vision_select_feature="cls_patch")
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.get_image_features(pixels).visual_tokens
        cls = model.vision_tower.encoder(pixels, output_hidden_states=True).hidden_states[-2][:, :1]
    assert model.num_image_tokens == features.shape[1] == 1 + 16
    torch.testing.assert_close(features[:, :1], model.mm_projector(cls).visual_tokens)


def test_dual_encoder_chinese_clip_checkpoint_gives_its_vision_weights(tiny_assets, tmp_path):
    """Released Chinese-CLIP checkpoints hold the text and the vision encoder; only the vision part is used."""
    vision = json.loads((tiny_assets["chinese_clip"] / "config.json").read_text())
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 99}
    torch.manual_seed(3)
    dual = ChineseCLIPModel(ChineseCLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    dual.save_pretrained(tmp_path)
    ChineseCLIPImageProcessorPil.from_pretrained(tiny_assets["chinese_clip"]).save_pretrained(tmp_path)
    assert load_vision_config(str(tmp_path)).model_type == "chinese_clip_vision_model"
    model, _, _ = build_tiny_llava({**tiny_assets, "dual": tmp_path}, llm="llama", vision="dual")
    expected = dual.vision_model.state_dict()
    got = model.vision_tower.encoder.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(got[name], expected[name]) for name in expected)
