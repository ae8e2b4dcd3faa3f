"""`to-hf` / `from-hf`: our checkpoints through transformers' own Llava processor and model, and back."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import (
    AutoProcessor,
    AutoTokenizer,
    CLIPImageProcessorPil,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from llava.inference import build_prompt
from llava.mm_utils import process_images, tokenizer_image_token
from llava.model.builder import load_pretrained_model
from llava.model.convert.cli import main
from llava.model.convert.from_hf import convert_from_hf
from llava.model.convert.to_hf import convert_to_hf
from llava.tiny import build_tiny_llava

QUESTION = "What colour is the square?"


def image() -> Image.Image:
    picture = Image.new("RGB", (44, 30), (200, 40, 40))
    picture.paste((20, 20, 200), (10, 5, 30, 25))
    return picture


def save_perturbed_llava(assets, out, **overrides):
    """A tiny checkpoint whose projector is far from its init, so a projector lost on the way shows."""
    model, tokenizer, processor = build_tiny_llava(assets, **overrides)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.mm_projector.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.3)
    for part in (model, tokenizer, processor):
        part.save_pretrained(out)
    return out


def our_logits(checkpoint, prompt: str | None = None) -> torch.Tensor:
    """(T, V) logits of our model for one image + QUESTION, prompted the way our CLI prompts by default."""
    tokenizer, model, processor, _ = load_pretrained_model(str(checkpoint))
    prompt = prompt or build_prompt(model, QUESTION, has_image=True)
    ids = tokenizer_image_token(prompt, tokenizer, return_tensors="pt")[None]
    with torch.no_grad():
        return model(input_ids=ids, images=process_images([image()], processor, model.config)).logits[0]


def transformers_prompt(folder) -> str:
    """The prompt that transformers' processor (the chat template saved in `folder`) writes for QUESTION."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    return AutoProcessor.from_pretrained(folder).apply_chat_template(messages, add_generation_prompt=True)


def transformers_logits(folder) -> torch.Tensor:
    """(T, V') logits of transformers' own processor (chat template, image tokens) and Llava model."""
    processor = AutoProcessor.from_pretrained(folder)
    text = transformers_prompt(folder)
    inputs = processor(images=image(), text=text, return_tensors="pt")
    model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(**inputs).logits[0]


# LLaMA-family tiny LLMs: the SmolLM2 tokenizer loads in a fraction of Qwen2's time (Qwen2 is covered by
# test_convert_parrot). Three towers, three feature selections, three projector layouts, three chat templates.
ROUND_TRIPS = {
    "clip-mlp2x_gelu-pad-chatml": dict(llm="llama", vision="clip", image_aspect_ratio="pad"),
    "siglip-linear-llama3": dict(llm="llama", vision="siglip", mm_projector_type="linear", conv_template="llama_3"),
    "clip-cls_patch-vicuna": dict(llm="llama", vision="clip", mm_vision_select_feature="cls_patch", conv_template="v1"),
    "chinese_clip-mlp2x_gelu": dict(llm="llama", vision="chinese_clip"),
}


@pytest.mark.parametrize("case", sorted(ROUND_TRIPS))
def test_round_trip_through_transformers_keeps_the_logits(case, tiny_assets, tmp_path):
    ours = save_perturbed_llava(tiny_assets, tmp_path / "ours", **ROUND_TRIPS[case])
    exported = convert_to_hf(ours, tmp_path / "hf")
    assert transformers_prompt(exported) == build_prompt(load_pretrained_model(str(ours))[1], QUESTION, has_image=True)
    expected = our_logits(ours)
    through_transformers = transformers_logits(exported)
    assert through_transformers.shape[0] == expected.shape[0]  # same prompt, same number of image tokens
    torch.testing.assert_close(through_transformers[:, : expected.shape[1]], expected, rtol=1e-5, atol=1e-5)
    back = convert_from_hf(exported, tmp_path / "back")
    torch.testing.assert_close(our_logits(back)[:, : expected.shape[1]], expected, rtol=1e-5, atol=1e-5)
    projector = ROUND_TRIPS[case].get("mm_projector_type", "mlp2x_gelu")
    assert json.loads((back / "config.json").read_text())["mm_projector_type"] == projector


def test_exported_config_states_image_token_sequence_length_and_feature_selection(tiny_assets, tmp_path):
    exported = convert_to_hf(save_perturbed_llava(tiny_assets, tmp_path / "ours", llm="llama"), tmp_path / "hf")
    config = json.loads((exported / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(exported)
    assert config["image_token_index"] == tokenizer.convert_tokens_to_ids("<image>")
    assert (config["image_seq_length"], config["vision_feature_layer"]) == (16, -2)  # 32 px / 8 px patches, no CLS
    assert config["vision_feature_select_strategy"] == "default"
    assert json.loads((exported / "processor_config.json").read_text())["processor_class"] == "LlavaProcessor"


def write_llava_hf_model(assets, out):
    """A tiny model as llava-hf publishes them: made with transformers' classes, not converted from ours."""
    tokenizer = AutoTokenizer.from_pretrained(assets["llama"])
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    text_config = json.loads((assets["llama"] / "config.json").read_text())
    text_config["vocab_size"] = len(tokenizer)
    vision_config = json.loads((assets["clip"] / "config.json").read_text())
    config = LlavaConfig(
        text_config=text_config, vision_config=vision_config, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=16, vision_feature_select_strategy="default", vision_feature_layer=-2,
    )
    torch.manual_seed(2)
    LlavaForConditionalGeneration(config).save_pretrained(out)
    # Their chat template: no system prompt, so none of ours reproduces it.
    template = (
        "{% for m in messages %}{{ m['role'].upper() + ': ' }}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}{{ '<image>\n' }}{% else %}{{ c['text'] + ' ' }}{% endif %}{% endfor %}"
        "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
    )
    image_processor = CLIPImageProcessorPil.from_pretrained(assets["clip"])
    LlavaProcessor(image_processor, tokenizer, patch_size=8, vision_feature_select_strategy="default",
                   chat_template=template, num_additional_image_tokens=1).save_pretrained(out)
    return out


def test_llava_hf_model_imports_with_its_logits_and_continues_training(tiny_assets, tiny_data, tmp_path):
    from llava.train.train import train

    source = write_llava_hf_model(tiny_assets, tmp_path / "llava-hf")
    ours = convert_from_hf(source, tmp_path / "ours", conv_template="chatml")
    torch.testing.assert_close(
        our_logits(ours, transformers_prompt(source)), transformers_logits(source), rtol=1e-5, atol=1e-5
    )
    trainer = train([
        "--model_name_or_path", str(ours), "--version", "chatml", "--data_path", str(tiny_data["instructions"]),
        "--image_folder", str(tiny_data["images"]), "--output_dir", str(tmp_path / "trained"),
        "--per_device_train_batch_size", "2", "--max_steps", "2", "--learning_rate", "1e-3", "--save_strategy", "no",
        "--report_to", "none", "--dataloader_num_workers", "0", "--logging_steps", "1",
    ])
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert load_pretrained_model(str(tmp_path / "trained"))[1].config.mm_projector_type == "mlp2x_gelu"


def test_foreign_chat_template_without_conv_template_falls_back_with_a_warning(tiny_assets, tmp_path, caplog):
    source = write_llava_hf_model(tiny_assets, tmp_path / "llava-hf")
    ours = convert_from_hf(source, tmp_path / "ours")
    assert json.loads((ours / "config.json").read_text())["conv_template"] is None
    assert "matches none of ours" in caplog.text and "--conv-template" in caplog.text


def test_plugin_projector_without_an_export_hook_is_refused_naming_the_engines_that_serve_it(tiny_assets, tmp_path, capsys):
    from llava.model.multimodal_projector import MLPProjector, register_projector

    # A plugin type with no `export` hook (parrot_moe and pargo have one: tests/test_convert_remote_code.py).
    register_projector("no_export_mlp", lambda config: MLPProjector(config, 2), overwrite=True)
    plugin = save_perturbed_llava(tiny_assets, tmp_path / "plugin", llm="llama", mm_projector_type="no_export_mlp")
    assert main(["to-hf", str(plugin), str(tmp_path / "hf")]) == 2
    error = capsys.readouterr().err
    assert "mm_projector_type 'no_export_mlp' cannot be expressed" in error and "this repository's own loaders" in error
    assert not (tmp_path / "hf").exists()


def test_deeper_mlp_projector_is_refused(tiny_assets, tmp_path, capsys):
    deep = save_perturbed_llava(tiny_assets, tmp_path / "deep", llm="llama", mm_projector_type="mlp3x_gelu")
    assert main(["to-hf", str(deep), str(tmp_path / "hf")]) == 2
    assert "mlp3x_gelu" in capsys.readouterr().err


def test_each_converter_refuses_the_other_ones_model_type(tiny_llava_checkpoint, tmp_path, capsys):
    assert main(["from-hf", str(tiny_llava_checkpoint), str(tmp_path / "x")]) == 2
    assert "model_type 'parrot_llava' is not transformers' 'llava'" in capsys.readouterr().err
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert main(["to-hf", str(tmp_path / "llama"), str(tmp_path / "y")]) == 2
    assert "model_type 'llama' is not 'parrot_llava'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.pop("mm_projector.2.bias"), "missing tensors mm_projector.2.bias"),
        (lambda t: t.update({"mm_projector.2.bias": torch.zeros(3)}), r"shape mismatches mm_projector.2.bias \(3,\)"),
    ],
    ids=["missing", "shape"],
)
def test_broken_weights_are_refused_by_name(edit, message, tiny_llava_checkpoint, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llava_checkpoint, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=message):
        convert_to_hf(broken, tmp_path / "hf")


def test_llava_hf_folder_missing_a_tensor_is_refused_before_anything_is_written(tiny_assets, tmp_path, capsys):
    source = write_llava_hf_model(tiny_assets, tmp_path / "llava-hf")
    tensors = load_file(str(source / "model.safetensors"))
    tensors = {name: tensor for name, tensor in tensors.items() if "linear_2.weight" not in name}
    save_file(tensors, str(source / "model.safetensors"), metadata={"format": "pt"})
    assert main(["from-hf", str(source), str(tmp_path / "ours")]) == 2
    assert "missing tensors model.multi_modal_projector.linear_2.weight" in capsys.readouterr().err
    assert not (tmp_path / "ours").exists()


@pytest.mark.parametrize("subcommand", ["to-hf", "from-hf", "from-parrot"])
def test_every_subcommand_has_help(subcommand, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--help"])
    assert exit_info.value.code == 0 and "usage: python -m llava.model.convert " + subcommand in capsys.readouterr().out
