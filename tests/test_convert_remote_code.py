"""`to-hf` for parrot_moe and pargo: transformers' Llava plus remote code for the projector only,
loaded in a subprocess that cannot import this package, and `from-hf` back to our format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pargo  # noqa: F401  (registers the projectors even without the entry points)
import parrot_moe  # noqa: F401
from llava.inference import build_prompt
from llava.mm_utils import process_images, tokenizer_image_token
from llava.model.builder import load_pretrained_model
from llava.model.convert.cli import main
from llava.model.convert.from_hf import convert_from_hf
from llava.model.convert.remote import AUTO_MAP, PROJECTOR_INDEX
from llava.model.convert.to_hf import convert_to_hf
from tests.test_convert_hf import QUESTION, image, save_perturbed_llava

# A 4x4 patch grid (32 px, 8 px patches): 4 partial queries of 2x2 patches and 2 global ones.
PARGO = dict(pargo_layers=2, pargo_hidden_size=16, pargo_heads=2, pargo_num_partial_queries=4, pargo_num_global_queries=2)
# Sharp routing (a standardised guidance, a low temperature), so that guidance read from the wrong tokens shows.
SHARP = dict(moe_guidance_norm="layernorm")
VARIANTS = {
    "moe-dense": dict(mm_projector_type="parrot_moe", moe_num_experts=3, **SHARP),
    "moe-top1": dict(mm_projector_type="parrot_moe", moe_num_experts=3, moe_top_k=1, moe_residual_mode="official", **SHARP),
    "moe-over-pargo": dict(mm_projector_type="parrot_moe", moe_num_experts=2, moe_base_projector="pargo", **SHARP, **PARGO),
    "pargo": dict(mm_projector_type="pargo", **PARGO),
    # The authors' layout: the projected CLS is also a visual token (17 tokens), SwiGLU experts.
    "moe-cls_patch-swiglu": dict(mm_projector_type="parrot_moe", moe_num_experts=2, moe_expert_type="swiglu",
                                 mm_vision_select_feature="cls_patch", **SHARP),
}
# Runs in a fresh interpreter, cwd outside the repository, where llava/parrot_moe/pargo cannot be imported.
BLOCKER = textwrap.dedent('''
    import sys
    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("llava", "parrot_moe", "pargo"):
                raise ImportError(f"{name} must not be importable here")
    sys.meta_path.insert(0, Blocked())
''')
LOAD = textwrap.dedent('''
    import json, sys, torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor
    folder, image_path, question, result = sys.argv[1:5]
    for name in ("llava", "parrot_moe", "pargo"):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} was importable")
    processor = AutoProcessor.from_pretrained(folder)
    model, info = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
    model = model.eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=Image.open(image_path), text=text, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    torch.save({
        "logits": out.logits[0, -1], "routing": out.routing_probs, "generated": generated[0, inputs["input_ids"].shape[1]:],
        "class": type(model).__name__, "missing": info["missing_keys"], "unexpected": info["unexpected_keys"],
        "num_image_tokens": int((inputs["input_ids"] == model.config.image_token_id).sum()),
    }, result)
''')


def load_without_this_package(folder: Path, tmp_path: Path) -> dict:
    """Load `folder` with transformers only, in a subprocess; its logits, routing and generated ids."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "sitecustomize.py").write_text(BLOCKER)
    (sandbox / "load.py").write_text(LOAD)
    image().save(sandbox / "image.png")
    repo = str(Path(__file__).resolve().parent.parent)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(sandbox), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", USE_HUB_KERNELS="0",
               HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONNOUSERSITE="1")
    # The editable install puts the repository on sys.path through a .pth file; the blocker still refuses it.
    done = subprocess.run(
        [sys.executable, str(sandbox / "load.py"), str(folder), str(sandbox / "image.png"), QUESTION,
         str(sandbox / "result.pt")],
        cwd=sandbox, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert repo not in env["PYTHONPATH"]
    return torch.load(sandbox / "result.pt")


def ours_on_the_question(checkpoint: Path) -> dict:
    """Our model on image() + QUESTION: last-token logits, routing probabilities, greedy tokens."""
    tokenizer, model, processor, _ = load_pretrained_model(str(checkpoint))
    ids = tokenizer_image_token(build_prompt(model, QUESTION, has_image=True), tokenizer, return_tensors="pt")[None]
    images = process_images([image()], processor, model.config)
    with torch.no_grad():
        out = model(input_ids=ids, images=images)
        generated = model.generate(ids, images=images, max_new_tokens=3, do_sample=False)
    return {"logits": out.logits[0, -1], "routing": (out.projector_metrics or {}).get("routing"),
            "generated": generated[0], "num_image_tokens": model.num_image_tokens, "model": model}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_export_loads_with_transformers_alone_and_matches_our_logits_routing_and_generation(variant, tiny_assets, tmp_path):
    ours = save_perturbed_llava(tiny_assets, tmp_path / "ours", llm="llama", **VARIANTS[variant])
    exported = convert_to_hf(ours, tmp_path / "hf")
    config = json.loads((exported / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and config["model_type"] == "parrot_llava_remote"
    expected = ours_on_the_question(ours)
    got = load_without_this_package(exported, tmp_path)
    assert got["class"] == "ParrotLlavaForConditionalGeneration" and not got["missing"] and not got["unexpected"]
    assert got["num_image_tokens"] == expected["num_image_tokens"] == config["image_seq_length"]
    vocab = expected["logits"].shape[0]
    assert (got["logits"][:vocab] - expected["logits"]).abs().max() <= 1e-4
    if VARIANTS[variant]["mm_projector_type"] == "parrot_moe":
        num_experts = VARIANTS[variant]["moe_num_experts"]
        assert got["routing"].shape == expected["routing"].shape == (1, num_experts)
        assert (expected["routing"] - 1 / num_experts).abs().max() > 0.05  # far from the no-guidance routing
        torch.testing.assert_close(got["routing"], expected["routing"], rtol=0, atol=1e-5)
    else:
        assert got["routing"] is None
    assert torch.equal(got["generated"], expected["generated"])


@pytest.mark.parametrize("variant", ["moe-top1", "moe-over-pargo", "pargo"])
def test_round_trip_through_the_remote_code_folder_keeps_every_tensor_and_the_logits(variant, tiny_assets, tmp_path):
    ours = save_perturbed_llava(tiny_assets, tmp_path / "ours", llm="llama", **VARIANTS[variant])
    back = convert_from_hf(convert_to_hf(ours, tmp_path / "hf"), tmp_path / "back")
    before, after = load_file(str(ours / "model.safetensors")), load_file(str(back / "model.safetensors"))
    assert sorted(before) == sorted(after)
    assert all(torch.equal(before[name], after[name]) for name in before)
    saved = {key: value for key, value in json.loads((ours / "config.json").read_text()).items() if key != "transformers_version"}
    restored = json.loads((back / "config.json").read_text())
    assert {key: restored.get(key) for key in saved if key not in ("text_config", "vision_config")} == {
        key: value for key, value in saved.items() if key not in ("text_config", "vision_config")
    }
    expected, again = ours_on_the_question(ours), ours_on_the_question(back)
    assert torch.equal(expected["logits"], again["logits"])


def test_shipped_projector_files_are_the_package_files_byte_for_byte(tiny_assets, tmp_path):
    ours = save_perturbed_llava(tiny_assets, tmp_path / "ours", llm="llama", **VARIANTS["moe-over-pargo"])
    exported = convert_to_hf(ours, tmp_path / "hf")
    root = Path(__file__).resolve().parent.parent
    package_files = {
        "moe_block.py": "parrot_moe", "router.py": "parrot_moe", "experts.py": "parrot_moe",
        "qformer.py": "pargo", "layers.py": "pargo", "masks.py": "pargo",
        "modeling_parrot_llava.py": "llava/model/remote_code", "configuration_parrot_llava.py": "llava/model/remote_code",
        "text_guidance.py": "llava/model/remote_code",
    }
    shipped = sorted(path.name for path in exported.glob("*.py"))
    assert shipped == sorted([*package_files, PROJECTOR_INDEX])
    for name, package in package_files.items():
        assert (exported / name).read_bytes() == (root / package / name).read_bytes(), name
    index = (exported / PROJECTOR_INDEX).read_text()
    assert "from .moe_block import" in index and "from .qformer import" in index
    # Over mlp2x_gelu the folder ships parrot_moe's files only: no pargo code rides along.
    plain = convert_to_hf(save_perturbed_llava(tiny_assets, tmp_path / "plain", llm="llama",
                                               **VARIANTS["moe-dense"]), tmp_path / "hf-plain")
    assert not (plain / "qformer.py").exists() and (plain / "moe_block.py").exists()


def test_shipped_modules_import_nothing_from_this_package():
    root = Path(__file__).resolve().parent.parent
    for path in [*(root / "parrot_moe").glob("*.py"), *(root / "pargo").glob("*.py"), *(root / "llava/model/remote_code").glob("*.py")]:
        if path.name in ("moe_block.py", "router.py", "experts.py", "qformer.py", "layers.py", "masks.py",
                         "modeling_parrot_llava.py", "configuration_parrot_llava.py", "text_guidance.py"):
            text = path.read_text()
            for package in ("llava", "parrot_moe", "pargo"):
                assert f"from {package}" not in text and f"import {package}" not in text, (path, package)


def test_model_card_of_a_remote_code_export_says_how_to_load_it_and_what_was_tested(tiny_assets, tmp_path):
    ours = save_perturbed_llava(tiny_assets, tmp_path / "ours", llm="llama", **VARIANTS["moe-dense"])
    assert main(["to-hf", str(ours), str(tmp_path / "hf")]) == 0
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "trust_remote_code=True" in card and "AutoModelForImageTextToText" in card
    assert "modeling_parrot_llava.ParrotLlavaForConditionalGeneration" in card
    assert "configuration_parrot_llava.ParrotLlavaConfig" in card
    assert "Tested: transformers" in card and "Not tested here: vLLM, SGLang and TGI" in card
    assert "library_name: transformers" in card


def test_routing_projector_on_a_tower_without_cls_is_refused(tiny_assets, tmp_path, capsys):
    moe = save_perturbed_llava(tiny_assets, tmp_path / "moe", llm="llama", vision="siglip", mm_projector_type="parrot_moe")
    assert main(["to-hf", str(moe), str(tmp_path / "hf")]) == 2
    error = capsys.readouterr().err
    assert "reads the vision CLS row" in error and "siglip" in error and "this repository's own loaders" in error
    assert not (tmp_path / "hf").exists()


def test_lora_adapter_folder_is_still_refused(tiny_assets, tmp_path, capsys):
    moe = save_perturbed_llava(tiny_assets, tmp_path / "moe", llm="llama", mm_projector_type="parrot_moe")
    (moe / "adapter_config.json").write_text("{}")
    assert main(["to-hf", str(moe), str(tmp_path / "hf")]) == 2
    assert "LoRA adapter must be merged first" in capsys.readouterr().err


def test_each_image_in_a_padded_batch_routes_on_its_own_prompt(tiny_assets, tmp_path):
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    ours = save_perturbed_llava(tiny_assets, tmp_path / "ours", llm="llama", **VARIANTS["moe-dense"])
    exported = convert_to_hf(ours, tmp_path / "hf")
    processor = AutoProcessor.from_pretrained(exported)
    model = AutoModelForImageTextToText.from_pretrained(exported, trust_remote_code=True).eval()
    questions = [QUESTION, "Describe every shape in this picture, and say where each one is, in a long sentence."]
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}], add_generation_prompt=True
        )
        for q in questions
    ]
    pictures = [image(), Image.new("RGB", (30, 30), (10, 200, 10))]
    with torch.no_grad():
        batch = processor(images=pictures, text=texts, return_tensors="pt", padding=True)
        assert not batch["attention_mask"].all()  # the shorter prompt is padded
        together = model(**batch).routing_probs
        alone = torch.cat([model(**processor(images=p, text=t, return_tensors="pt")).routing_probs
                           for p, t in zip(pictures, texts)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    assert (together[0] - together[1]).abs().max() > 1e-3  # different prompts and images route differently


def test_stage1_folder_without_full_weights_is_still_refused(tiny_assets, tmp_path, capsys):
    moe = save_perturbed_llava(tiny_assets, tmp_path / "moe", llm="llama", mm_projector_type="parrot_moe")
    for weights in moe.glob("*.safetensors"):
        weights.unlink()
    assert main(["to-hf", str(moe), str(tmp_path / "hf")]) == 2
    assert "no full model weights" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()
