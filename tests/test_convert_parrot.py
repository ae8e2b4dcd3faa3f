"""`from-parrot`: a tiny checkpoint in exactly AIDC-AI's released layout converts to ours, computes what
their code computes (checked against a float64 reference written here from their equations), and is
then evaluated and served like any other checkpoint."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, CLIPVisionModel, Qwen2Config, Qwen2ForCausalLM

from llava.constants import IMAGE_TOKEN_INDEX
from llava.mm_utils import process_images, tokenizer_image_token
from llava.model.builder import load_pretrained_model
from llava.model.convert.base import ConversionError
from llava.model.convert.cli import main
from parrot_moe.convert import convert_from_parrot

NUM_EXPERTS, MOE_INTERMEDIATE, MOE_WEIGHT = 3, 48, 0.25


def write_parrot_checkpoint(assets, out):
    """Their config.json fields and tensor names, at tiny sizes, in safetensors (seeded)."""
    gen = torch.Generator().manual_seed(0)
    qwen = json.loads((assets["qwen2"] / "config.json").read_text())
    width = qwen["hidden_size"]
    vision_width = json.loads((assets["clip"] / "config.json").read_text())["hidden_size"]
    config = {
        **{k: v for k, v in qwen.items() if k not in ("architectures", "model_type", "transformers_version")},
        "architectures": ["ParrotQwen2ForCausalLM"], "model_type": "parrot_qwen2", "tie_word_embeddings": False,
        "mm_vision_tower": str(assets["clip"]), "mm_vision_select_layer": -2, "mm_vision_select_feature": "cls_patch",
        "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": vision_width, "mm_patch_merge_type": "flat",
        "use_mm_proj": True, "image_aspect_ratio": "pad", "tokenizer_padding_side": "right",
        "tokenizer_model_max_length": 2048, "tune_mm_mlp_adapter": False,
        "num_experts": NUM_EXPERTS, "moe_hidden_size": width, "moe_intermediate_size": MOE_INTERMEDIATE,
        "moe_top_k": 2, "moe_weight": MOE_WEIGHT, "use_moe": True, "use_moe_residual": True,
    }

    def rand(*shape, scale=0.2):
        return torch.randn(*shape, generator=gen) * scale

    llm = Qwen2ForCausalLM.from_pretrained(assets["qwen2"]).state_dict()
    tensors = {k: v.clone() for k, v in llm.items() if k != "lm_head.weight"}
    tensors["lm_head.weight"] = rand(*llm["model.embed_tokens.weight"].shape)  # untied, as in Qwen1.5-7B
    clip = load_file(str(assets["clip"] / "model.safetensors"))
    tensors.update({f"model.vision_tower.vision_tower.vision_model.{k}": v for k, v in clip.items()})
    tensors.update({
        "model.mm_projector.0.weight": rand(width, vision_width), "model.mm_projector.0.bias": rand(width),
        "model.mm_projector.2.weight": rand(width, width), "model.mm_projector.2.bias": rand(width),
        "model.moe_model.gate.weight": rand(NUM_EXPERTS, width, scale=2.0),
    })
    for i in range(NUM_EXPERTS):
        for part, shape in (("gate_proj", (MOE_INTERMEDIATE, width)), ("up_proj", (MOE_INTERMEDIATE, width)),
                            ("down_proj", (width, MOE_INTERMEDIATE))):
            tensors[f"model.moe_model.experts.{i}.{part}.weight"] = rand(*shape)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer = AutoTokenizer.from_pretrained(assets["qwen2"])
    tokenizer.eos_token = "<|endoftext|>"  # Qwen1.5's own; their loader overrides it with <|im_end|>
    tokenizer.save_pretrained(out)
    return out


def reference_logits(source, clip_dir, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
    """Their forward for one sample, in float64, from the equations: (T, V) logits.

    H = mlp2x_gelu(CLIP layer -2, CLS kept); q = H[0]; text = embeddings of every prompt token;
    P = softmax(W_g softmax(q text^T / sqrt(C)) text); G = sum_i P_i down_i(silu(gate_i H) * up_i H) + w H.
    """
    config = json.loads((source / "config.json").read_text())
    t = {k: v.double() for k, v in load_file(str(source / "model.safetensors")).items()}
    clip = CLIPVisionModel.from_pretrained(clip_dir, dtype=torch.float64).eval()
    features = clip(pixel_values.double(), output_hidden_states=True).hidden_states[-2][0]
    hidden = F.gelu(features @ t["model.mm_projector.0.weight"].T + t["model.mm_projector.0.bias"])
    hidden = hidden @ t["model.mm_projector.2.weight"].T + t["model.mm_projector.2.bias"]
    embed = t["model.embed_tokens.weight"]
    ids = input_ids[0]
    text = embed[ids[ids != IMAGE_TOKEN_INDEX]]
    attention = torch.softmax(hidden[0] @ text.T / math.sqrt(hidden.shape[-1]), dim=-1)
    probs = torch.softmax(t["model.moe_model.gate.weight"] @ (attention @ text), dim=-1)
    moe = sum(
        probs[i] * (F.silu(hidden @ t[f"model.moe_model.experts.{i}.gate_proj.weight"].T)
                    * (hidden @ t[f"model.moe_model.experts.{i}.up_proj.weight"].T)) @ t[f"model.moe_model.experts.{i}.down_proj.weight"].T
        for i in range(NUM_EXPERTS)
    )
    visual = moe + config["moe_weight"] * hidden
    at = int((ids == IMAGE_TOKEN_INDEX).nonzero())
    sequence = torch.cat([embed[ids[:at]], visual, embed[ids[at + 1:]]])
    qwen_fields = {k: v for k, v in config.items() if not k.startswith(("mm_", "moe_")) and k not in ("model_type", "architectures")}
    llm = Qwen2ForCausalLM(Qwen2Config(**qwen_fields)).double().eval()
    llm.load_state_dict({k: v for k, v in t.items() if k.startswith(("model.layers", "model.norm", "model.embed", "lm_head"))})
    return llm(inputs_embeds=sequence[None]).logits[0]


@pytest.fixture(scope="module")
def parrot_source(tiny_assets, tmp_path_factory):
    return write_parrot_checkpoint(tiny_assets, tmp_path_factory.mktemp("parrot_official"))


@pytest.fixture(scope="module")
def converted(parrot_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("parrot_converted")
    assert main(["from-parrot", str(parrot_source), str(out)]) == 0
    return out


def _prompt_and_image(tokenizer, image_processor, config):
    image = Image.new("RGB", (40, 28), (30, 120, 220))
    prompt = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<image>\nЭто какой цвет?<|im_end|>\n<|im_start|>assistant\n"
    )
    return tokenizer_image_token(prompt, tokenizer, return_tensors="pt")[None], process_images([image], image_processor, config)


def test_converted_parrot_gives_the_logits_of_their_computation(converted, parrot_source, tiny_assets):
    tokenizer, model, image_processor, _ = load_pretrained_model(str(converted))
    input_ids, pixels = _prompt_and_image(tokenizer, image_processor, model.config)
    with torch.no_grad():
        expected = reference_logits(parrot_source, tiny_assets["clip"], input_ids, pixels)
        got = model.double()(input_ids=input_ids, images=pixels.double()).logits[0]
    assert got.shape == expected.shape  # 1 + N visual tokens: the projected CLS goes to the LLM too
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_converted_config_names_the_flags_that_reproduce_their_code(converted):
    config = json.loads((converted / "config.json").read_text())
    assert {k: config[k] for k in ("mm_projector_type", "moe_expert_type", "moe_residual_mode", "moe_alpha",
                                   "moe_num_experts", "moe_top_k", "mm_vision_select_feature", "image_aspect_ratio")} == {
        "mm_projector_type": "parrot_moe", "moe_expert_type": "swiglu", "moe_residual_mode": "official",
        "moe_alpha": MOE_WEIGHT, "moe_num_experts": NUM_EXPERTS, "moe_top_k": None,
        "mm_vision_select_feature": "cls_patch", "image_aspect_ratio": "pad"}


def test_converted_tokenizer_ends_at_im_end_and_pads_with_endoftext(converted):
    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert json.loads((converted / "config.json").read_text())["text_config"]["eos_token_id"] == tokenizer.eos_token_id


def test_converted_parrot_answers_questions_with_model_vqa_loader(converted, tmp_path):
    from llava.eval.model_vqa_loader import main as vqa_main

    Image.new("RGB", (20, 16), (220, 30, 30)).save(tmp_path / "red.png")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "image": "red.png", "text": "这是什么颜色？"}) + "\n")
    answers = tmp_path / "a.jsonl"
    assert vqa_main(["--model-path", str(converted), "--question-file", str(questions), "--image-folder",
                     str(tmp_path), "--answers-file", str(answers), "--max_new_tokens", "3"]) in (0, None)
    record = json.loads(answers.read_text())
    assert record["question_id"] == 1 and "error" not in record["metadata"]


def test_converted_parrot_is_served_with_routing_over_its_experts(converted):
    from llava.serve.engine import ChatEngine, SamplingParams

    engine = ChatEngine.from_pretrained(str(converted), device="cpu")
    prepared = engine.prepare("What colour is it?", image=Image.new("RGB", (20, 16), (220, 30, 30)))
    result = engine.generate(prepared, SamplingParams(max_new_tokens=4, temperature=0.0))
    assert result.completion_tokens >= 1
    assert len(result.routing) == NUM_EXPERTS and abs(sum(result.routing) - 1) < 1e-5


def _broken_copy(source, tmp_path, edit_tensors=None, edit_config=None):
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    if edit_tensors:
        tensors = load_file(str(broken / "model.safetensors"))
        edit_tensors(tensors)
        save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    if edit_config:
        config = json.loads((broken / "config.json").read_text())
        edit_config(config)
        (broken / "config.json").write_text(json.dumps(config))
    return broken


def test_missing_expert_tensor_is_refused_by_name(parrot_source, tmp_path):
    broken = _broken_copy(parrot_source, tmp_path, edit_tensors=lambda t: t.pop("model.moe_model.experts.2.down_proj.weight"))
    with pytest.raises(ConversionError, match=r"experts\.2\.down_proj"):
        convert_from_parrot(broken, tmp_path / "out")


def test_router_shape_mismatch_is_refused_with_both_shapes(parrot_source, tmp_path):
    def widen(tensors):
        tensors["model.moe_model.gate.weight"] = torch.zeros(NUM_EXPERTS, 7)

    broken = _broken_copy(parrot_source, tmp_path, edit_tensors=widen)
    with pytest.raises(ConversionError, match=r"shape mismatches mm_projector\.moe\.router\.gate\.weight \(3, 7\)"):
        convert_from_parrot(broken, tmp_path / "out")


def test_unknown_model_type_is_refused_naming_the_right_subcommand(parrot_source, tmp_path, capsys):
    broken = _broken_copy(parrot_source, tmp_path, edit_config=lambda c: c.update(model_type="llava"))
    assert main(["from-parrot", str(broken), str(tmp_path / "out")]) == 2
    assert "model_type 'llava' is not 'parrot_qwen2'" in capsys.readouterr().err


def test_moe_after_a_linear_projector_is_refused_as_inexpressible(parrot_source, tmp_path):
    broken = _broken_copy(parrot_source, tmp_path, edit_config=lambda c: c.update(mm_projector_type="linear"))
    with pytest.raises(ConversionError, match="built on mlp2x_gelu"):
        convert_from_parrot(broken, tmp_path / "out")
