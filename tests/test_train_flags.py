"""Training flags either work or say they do nothing: upstream-only flags log that they have no
effect, values that are not implemented are refused before anything loads."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from llava.train.preflight import LaunchError, check_model_args, check_training_args
from llava.train.train import parse_args


def no_effect_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "no effect" in r.getMessage()]


def test_upstream_flags_without_effect_are_accepted_and_each_logs_that(tmp_path, caplog):
    argv = ["--output_dir", str(tmp_path), "--lazy_preprocess", "True", "--mpt_attn_impl", "triton",
            "--lora_weight_path=x"]
    with caplog.at_level(logging.WARNING, logger="llava.train.arguments"):
        parse_args(argv)
    lines = no_effect_lines(caplog)
    assert [line.split()[0] for line in lines] == ["--lazy_preprocess", "--mpt_attn_impl", "--lora_weight_path"]
    assert "data is always read lazily" in lines[0]


def test_quantization_settings_without_bits_4_log_that_they_have_no_effect(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="llava.train.arguments"):
        parse_args(["--output_dir", str(tmp_path), "--double_quant", "False", "--quant_type", "fp4"])
    assert no_effect_lines(caplog) == ["--double_quant has no effect without --bits 4",
                                       "--quant_type has no effect without --bits 4"]


def test_flags_that_have_an_effect_log_nothing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="llava.train.arguments"):
        parse_args(["--output_dir", str(tmp_path), "--lora_bias", "none", "--freeze_backbone", "True"])
    assert no_effect_lines(caplog) == []


def test_a_removed_flag_is_an_unknown_flag(tmp_path):
    with pytest.raises(LaunchError, match="unknown flags.*--is_multimodal"):
        parse_args(["--output_dir", str(tmp_path), "--is_multimodal", "True"])


@pytest.mark.parametrize(("flag", "value"), [
    ("mm_patch_merge_type", "spatial_unpad"), ("image_aspect_ratio", "anyres"), ("mm_vision_select_feature", "cls"),
])
def test_values_that_are_not_implemented_here_are_refused(tmp_path, flag, value):
    model_args, data_args, _, _ = parse_args(["--output_dir", str(tmp_path), f"--{flag}", value])
    with pytest.raises(LaunchError, match=f"--{flag} {value} is not supported here"):
        check_model_args(model_args, data_args)


def test_a_4bit_quant_type_bitsandbytes_does_not_know_is_refused():
    args = SimpleNamespace(bits=4, quant_type="int4", lora_enable=False, packing=False, max_bad_steps=3)
    with pytest.raises(LaunchError, match="--quant_type int4 is not a bitsandbytes 4-bit type"):
        check_training_args(args)
