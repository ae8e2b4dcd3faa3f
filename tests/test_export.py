"""`llava.model.export`: a full checkpoint split into LLM / vision tower / projector, and reassembled."""

from __future__ import annotations

import pytest
import torch

from llava.constants import IMAGE_TOKEN_INDEX
from llava.model.builder import load_pretrained_model
from llava.model.export import export_components, main
from llava.model.projector_io import load_projector_weights
from llava.tiny import build_tiny_llava


def _inputs(model, image_size: int):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 200, (2, 10), generator=gen)
    ids[:, 2] = IMAGE_TOKEN_INDEX
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "images": torch.randn(2, 3, image_size, image_size, generator=gen)}


def test_split_then_reassemble_gives_the_same_logits(tiny_llava_checkpoint, tmp_path):
    tokenizer, original, processor = load_pretrained_model(str(tiny_llava_checkpoint))[:3]
    with torch.no_grad():  # make the projector non-trivial, so a missed load would show
        for p in original.mm_projector.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    source = tmp_path / "perturbed"
    for part in (original, tokenizer, processor):
        part.save_pretrained(source)
    parts = export_components(source, tmp_path / "split")
    rebuilt, _, _ = build_tiny_llava({"qwen2": parts["llm"], "clip": parts["vision_tower"]}, llm="qwen2", vision="clip")
    load_projector_weights(rebuilt.mm_projector, str(parts["projector"]))
    batch = _inputs(original, processor.crop_size["height"])
    with torch.no_grad():
        expected = original.eval()(**batch).logits
        got = rebuilt.eval()(**batch).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_exported_projector_loads_into_parrot_moe(tiny_llava_checkpoint, tiny_assets, tmp_path):
    parts = export_components(tiny_llava_checkpoint, tmp_path / "split")
    moe, _, _ = build_tiny_llava(tiny_assets, llm="qwen2", mm_projector_type="parrot_moe")
    load_projector_weights(moe.mm_projector, str(parts["projector"]))  # raises on unexpected or mismatched keys


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        export_components(tmp_path / "nothing", tmp_path / "out")
    assert main([str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert "no config.json" in capsys.readouterr().err
