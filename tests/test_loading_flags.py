"""`load_pretrained_model` does what its flags say: quantization refuses clearly where it cannot run,
`device_map` reaches accelerate, the default dtype follows the device, unknown keywords fail."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from llava.constants import MM_PROJECTOR_FILE
from llava.model import builder
from llava.model.builder import default_dtype, load_pretrained_model, parse_device_map, quantization_config
from llava.model.projector_io import projector_state_dict_for_upstream


@pytest.fixture()
def cuda_with_bitsandbytes(monkeypatch):
    """A machine that claims CUDA and bitsandbytes (to reach the checks behind them on a CPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))


def test_load_4bit_on_a_cpu_is_a_clear_error_not_a_full_precision_load(tiny_llava_checkpoint):
    with pytest.raises(RuntimeError, match="--load-4bit quantizes the LLM with bitsandbytes, which needs a CUDA GPU"):
        load_pretrained_model(str(tiny_llava_checkpoint), load_4bit=True)


def test_load_8bit_without_bitsandbytes_names_the_extra_to_install(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # an import of it fails
    with pytest.raises(ImportError, match=r"--load-8bit: bitsandbytes is required .*\[gpu\]"):
        quantization_config(load_8bit=True, load_4bit=False, compute_dtype=torch.bfloat16)


def test_load_8bit_and_load_4bit_together_are_refused():
    with pytest.raises(ValueError, match="exclude each other"):
        quantization_config(load_8bit=True, load_4bit=True, compute_dtype=torch.float16)


def test_4bit_quantizes_the_llm_and_leaves_tower_and_projector_in_the_compute_dtype(cuda_with_bitsandbytes):
    config = quantization_config(load_8bit=False, load_4bit=True, compute_dtype=torch.bfloat16)
    assert config.load_in_4bit and not config.load_in_8bit and config.bnb_4bit_compute_dtype == torch.bfloat16
    assert {"vision_tower", "mm_projector"} <= set(config.llm_int8_skip_modules)


def test_a_lora_adapter_is_not_quantized_unmerged(cuda_with_bitsandbytes, tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="merge it into its base first"):
        load_pretrained_model(str(tmp_path), model_base="base", load_4bit=True)


def test_device_map_cpu_loads_a_model_that_answers(tiny_llava_checkpoint):
    tokenizer, model, _, _ = load_pretrained_model(str(tiny_llava_checkpoint), device_map={"": "cpu"})
    ids = tokenizer("Hello", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=2, do_sample=False).shape == (1, 2)
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_device_map_reaches_accelerate(tiny_llava_checkpoint):
    _, model, _, _ = load_pretrained_model(str(tiny_llava_checkpoint), device_map={"": "meta"})
    assert {p.device.type for p in model.parameters()} == {"meta"}  # placed as the map says, not on `device`


def test_a_stage1_projector_on_its_llm_gets_the_attention_and_placement_asked_for(tiny_llava_checkpoint, tiny_assets,
                                                                                 tmp_path):
    _, trained, _, _ = load_pretrained_model(str(tiny_llava_checkpoint))
    trained.config.save_pretrained(tmp_path)  # what stage 1 writes: config.json + mm_projector.bin
    torch.save(projector_state_dict_for_upstream(trained.mm_projector), tmp_path / MM_PROJECTOR_FILE)
    _, model, _, _ = load_pretrained_model(str(tmp_path), model_base=str(tiny_assets["qwen2"]),
                                           attn_implementation="eager", device_map={"": "cpu"})
    assert model.language_model.config._attn_implementation == "eager"
    assert torch.equal(model.mm_projector.state_dict()["0.weight"], trained.mm_projector.state_dict()["0.weight"])


def test_device_map_flag_reads_strategies_devices_and_json():
    assert parse_device_map("auto") == "auto" and parse_device_map("cuda:1") == "cuda:1"
    assert parse_device_map('{"language_model": 0, "vision_tower": "cpu"}') == {"language_model": 0, "vision_tower": "cpu"}
    with pytest.raises(ValueError, match="--device-map"):
        parse_device_map("{language_model: 0")


@pytest.mark.parametrize(("device", "bf16", "expected"), [
    ("cuda", True, torch.bfloat16), ("cuda:1", False, torch.float16), ("cpu", True, torch.float32),
])
def test_default_dtype_is_bf16_on_cuda_where_supported_else_fp16_and_fp32_on_cpu(monkeypatch, device, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert default_dtype(device) == expected


def test_a_keyword_load_pretrained_model_does_not_know_is_an_error(tiny_llava_checkpoint):
    with pytest.raises(TypeError, match="load_in_4bit"):
        load_pretrained_model(str(tiny_llava_checkpoint), load_in_4bit=True)


def test_upstream_use_flash_attn_asks_for_flash_attention_2(tiny_llava_checkpoint, monkeypatch):
    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop after from_pretrained was called")

    monkeypatch.setattr(builder.LlavaForCausalLM, "from_pretrained", record)
    with pytest.raises(RuntimeError, match="stop after"):
        load_pretrained_model(str(tiny_llava_checkpoint), use_flash_attn=True)
    assert seen["attn_implementation"] == "flash_attention_2"
