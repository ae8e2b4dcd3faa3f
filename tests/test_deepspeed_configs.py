"""scripts/zero*.json are valid DeepSpeed configs whose batch/precision knobs are left to HF ("auto"),
and `--deepspeed` problems stop train.py with one actionable line."""

import json
import sys
from pathlib import Path

import pytest
from deepspeed.runtime.zero.config import DeepSpeedZeroConfig
from distributed_utils import train_flags

from llava.train.train import main

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
HF_FILLED = ("train_micro_batch_size_per_gpu", "train_batch_size", "gradient_accumulation_steps", "gradient_clipping")
HIDDEN_SIZE_AUTOS = {"reduce_bucket_size": 64 * 64, "stage3_prefetch_bucket_size": 3686, "stage3_param_persistence_threshold": 640}


def zero_config(name: str) -> tuple[dict, DeepSpeedZeroConfig]:
    config = json.loads((SCRIPTS / name).read_text())
    zero = {k: HIDDEN_SIZE_AUTOS.get(k, v) if v == "auto" else v for k, v in config["zero_optimization"].items()}
    return config, DeepSpeedZeroConfig(**zero)  # rejects unknown or mistyped keys


@pytest.mark.parametrize(("name", "stage"), [("zero2.json", 2), ("zero3.json", 3), ("zero3_offload.json", 3)])
def test_config_is_valid_and_leaves_batch_and_precision_to_the_trainer(name, stage):
    config, zero = zero_config(name)
    assert zero.stage == stage
    assert all(config[key] == "auto" for key in HF_FILLED)
    assert config["bf16"]["enabled"] == "auto" and config["fp16"]["enabled"] == "auto"


@pytest.mark.parametrize("name", ["zero3.json", "zero3_offload.json"])
def test_zero3_configs_save_consolidated_16bit_weights(name):
    _, zero = zero_config(name)
    assert zero.gather_16bit_weights_on_model_save


def test_offload_config_moves_parameters_and_optimizer_state_to_cpu():
    config, zero = zero_config("zero3_offload.json")
    assert zero.offload_param.device == "cpu" and zero.offload_optimizer.device == "cpu"
    assert config["optimizer"]["params"]["lr"] == "auto"


def test_deepspeed_flag_without_deepspeed_installed_exits_with_the_install_command(
    tiny_assets, tiny_data, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # `import deepspeed` now raises ImportError
    flags = train_flags(tiny_assets, tiny_data, tmp_path, stage=1, extra=["--deepspeed", str(SCRIPTS / "zero2.json")])
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "--deepspeed" in err and "pip install" in err and "drop --deepspeed" in err


def test_missing_deepspeed_config_file_names_the_shipped_configs(tiny_assets, tiny_data, tmp_path, capsys):
    flags = train_flags(tiny_assets, tiny_data, tmp_path, stage=1, extra=["--deepspeed", str(tmp_path / "zero9.json")])
    with pytest.raises(SystemExit):
        main(flags)
    err = capsys.readouterr().err
    assert f"--deepspeed {tmp_path / 'zero9.json'}: no such file" in err and "scripts/zero3.json" in err
