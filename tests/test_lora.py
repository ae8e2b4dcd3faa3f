"""LoRA: adapters on the LLM's linear layers only; projector and MoE train in full and are saved beside
the adapter; scripts/merge_lora_weights.py writes a standalone checkpoint with the same logits;
`--bits 4|8` says what is missing on a machine without CUDA or bitsandbytes."""

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from distributed_utils import train_flags
from safetensors.torch import load_file
from transformers import TrainerCallback

from llava.model.builder import NON_LORA_TRAINABLES_FILE, load_pretrained_model
from llava.train.train import main, train

REPO = Path(__file__).resolve().parents[1]
LORA_FLAGS = ["--lora_enable", "True", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0.0",
              "--mm_projector_type", "parrot_moe", "--moe_num_experts", "3", "--learning_rate", "1e-2",
              "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2"]


def load_merge_script():
    spec = importlib.util.spec_from_file_location("merge_lora_weights", REPO / "scripts" / "merge_lora_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lora_run(tiny_assets, tiny_data, tmp_path_factory):
    """Stage-2 LoRA training of a tiny LLaMA (SmolLM2 vocabulary) + CLIP + parrot_moe, with an added `<im_patch>` token
    (so the embeddings grow and must travel with the adapter)."""
    out = tmp_path_factory.mktemp("lora")
    flags = train_flags(tiny_assets, tiny_data, out, stage=2, llm="llama",
                        extra=LORA_FLAGS + ["--mm_use_im_patch_token", "True"])
    trainer = train(flags)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    batch.pop("image_langs", None)
    batch.pop("ids", None)
    model = trainer.model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
        with model.disable_adapter():
            base_logits = model(**batch).logits
    return {"out": out, "flags": flags, "model": model, "batch": batch, "logits": logits, "base_logits": base_logits}


def test_lora_adapts_every_llm_linear_layer_except_the_head_and_nothing_else(lora_run):
    base = lora_run["model"].get_base_model()
    adapted = {name for name, module in base.named_modules() if hasattr(module, "lora_A")}
    assert adapted and all(name.startswith("language_model.model.layers.") for name in adapted)
    peft_parts = {"base_layer", "lora_A", "lora_B"}
    plain_llm_linears = {
        name for name, module in base.language_model.named_modules()
        if type(module) is nn.Linear and not peft_parts & set(name.split("."))
    }
    assert plain_llm_linears == {"lm_head"}


def test_projector_and_moe_train_in_full_and_are_saved_beside_the_adapter(lora_run):
    base = lora_run["model"].get_base_model()
    projector = {f"mm_projector.{n}": p for n, p in base.mm_projector.named_parameters()}
    assert all(p.requires_grad for p in projector.values())
    assert any(".moe." in name for name in projector)
    saved = load_file(lora_run["out"] / NON_LORA_TRAINABLES_FILE)
    assert all(torch.equal(saved[name], p.detach()) for name, p in projector.items())
    assert not any("vision_tower" in name or "lora_" in name for name in saved)
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json"} <= {
        p.name for p in lora_run["out"].iterdir()
    }


def test_merged_checkpoint_gives_the_unmerged_models_logits(lora_run, tiny_assets, tmp_path):
    merged_dir = tmp_path / "merged"
    load_merge_script().main(["--model-path", str(lora_run["out"]), "--model-base", str(tiny_assets["llama"]),
                              "--save-model-path", str(merged_dir), "--dtype", "float32"])
    _, merged, _, _ = load_pretrained_model(str(merged_dir))
    with torch.no_grad():
        logits = merged(**lora_run["batch"]).logits
    assert not torch.allclose(lora_run["logits"], lora_run["base_logits"], atol=1e-3)  # the adapter matters
    torch.testing.assert_close(logits, lora_run["logits"], atol=1e-4, rtol=1e-4)


def test_resumed_lora_run_restores_the_projector_from_its_checkpoint(lora_run, tmp_path):
    restored = {}

    class RecordProjectorAtStart(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            restored.update(model.get_base_model().mm_projector.state_dict())

    shutil.copytree(lora_run["out"] / "checkpoint-2", tmp_path / "checkpoint-2")  # leave the fixture's run as it is
    train(lora_run["flags"] + ["--max_steps", "3", "--output_dir", str(tmp_path)], callbacks=[RecordProjectorAtStart()])
    saved = load_file(tmp_path / "checkpoint-2" / NON_LORA_TRAINABLES_FILE)
    assert restored and all(torch.equal(v, saved[f"mm_projector.{k}"]) for k, v in restored.items())


def test_bits_4_without_cuda_exits_naming_cuda_and_bitsandbytes(tiny_assets, tiny_data, tmp_path, capsys):
    flags = train_flags(tiny_assets, tiny_data, tmp_path, stage=2, extra=LORA_FLAGS + ["--bits", "4"])
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--bits 4" in err and "CUDA" in err and "bitsandbytes" in err and "drop --bits" in err
    assert "Traceback" not in err
