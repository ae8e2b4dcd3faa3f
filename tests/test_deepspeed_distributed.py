"""DeepSpeed on two CPU processes (`torchrun --nproc_per_node 2`, gloo), as paper Table 5 runs it on GPUs:
stage 1 under ZeRO-2, then stage 2 with `parrot_moe` under ZeRO-3 starting from stage 1's
`mm_projector.bin`, stage 2 with LoRA under ZeRO-3, and stage 2 with `parrot_moe` on `pargo` under
ZeRO-3 from a one-process pargo stage 1. Each run saves the logits of its trained
model on a fixed batch (computed by the DeepSpeed engine on both ranks, so ZeRO-3 gathers the
shards); the tests reload the saved output in this single process and compare.
"""

import json
from pathlib import Path

import pytest
import torch
from distributed_utils import run_torchrun, run_training, train_flags
from safetensors.torch import load_file

from llava.constants import MM_PROJECTOR_FILE
from llava.model.builder import NON_LORA_TRAINABLES_FILE, load_pretrained_model
from llava.model.projector_io import read_projector_file
from llava.train.checkpoints import COMPLETE_MARKER

REPO_SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
STAGE2_LR = 1e-4
# pargo on the tiny CLIP's 4x4 patch grid: 8 windows of 1x2 patches and 2 global queries.
PARGO_FLAGS = ["--pargo_layers", "2", "--pargo_hidden_size", "32", "--pargo_heads", "4",
               "--pargo_num_partial_queries", "8", "--pargo_num_global_queries", "2"]


def logits_of(model, batch):
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture(scope="module")
def zero2_stage1(tiny_assets, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("zero2")
    flags = train_flags(tiny_assets, tiny_data, root / "out", stage=1, llm="llama", extra=[
        "--deepspeed", str(REPO_SCRIPTS / "zero2.json"), "--max_steps", "2", "--save_strategy", "steps",
        "--save_steps", "2"])
    status = run_torchrun(flags, root / "log.txt", PARROT_TEST_PROBE=str(root / "probe.pt"))
    assert status == 0, (root / "log.txt").read_text()[-4000:]
    return {"out": root / "out", "probe": torch.load(root / "probe.pt", weights_only=False)}


@pytest.fixture(scope="module")
def zero3_stage2(zero2_stage1, tiny_assets, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("zero3")
    flags = train_flags(tiny_assets, tiny_data, root / "out", stage=2, llm="llama", extra=[
        "--deepspeed", str(REPO_SCRIPTS / "zero3.json"), "--max_steps", "2", "--save_strategy", "no",
        "--mm_projector_type", "parrot_moe", "--moe_num_experts", "3", "--learning_rate", str(STAGE2_LR),
        "--pretrain_mm_mlp_adapter", str(zero2_stage1["out"] / MM_PROJECTOR_FILE), "--log_level", "info"])
    status = run_torchrun(flags, root / "log.txt", PARROT_TEST_PROBE=str(root / "probe.pt"))
    log = (root / "log.txt").read_text()
    assert status == 0, log[-4000:]
    return {"out": root / "out", "log": log, "probe": torch.load(root / "probe.pt", weights_only=False)}


@pytest.fixture(scope="module")
def zero3_lora(tiny_assets, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("zero3_lora")
    flags = train_flags(tiny_assets, tiny_data, root / "out", stage=2, llm="llama", extra=[
        "--deepspeed", str(REPO_SCRIPTS / "zero3.json"), "--max_steps", "2", "--save_strategy", "steps",
        "--save_steps", "2", "--mm_projector_type", "parrot_moe", "--moe_num_experts", "3", "--lora_enable", "True",
        "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "1e-2"])
    status = run_torchrun(flags, root / "log.txt", PARROT_TEST_PROBE=str(root / "probe.pt"))
    assert status == 0, (root / "log.txt").read_text()[-4000:]
    return {"out": root / "out", "probe": torch.load(root / "probe.pt", weights_only=False)}


@pytest.fixture(scope="module")
def zero3_parrot_on_pargo(tiny_assets, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("zero3_pargo")
    stage1 = train_flags(tiny_assets, tiny_data, root / "stage1", stage=1, llm="llama",
                         extra=[*PARGO_FLAGS, "--max_steps", "2", "--save_strategy", "no"])
    stage1[stage1.index("--mm_projector_type") + 1] = "pargo"
    assert run_training(stage1, root / "stage1.txt") == 0, (root / "stage1.txt").read_text()[-4000:]
    flags = train_flags(tiny_assets, tiny_data, root / "out", stage=2, llm="llama", extra=[
        "--deepspeed", str(REPO_SCRIPTS / "zero3.json"), "--max_steps", "2", "--save_strategy", "no",
        "--mm_projector_type", "parrot_moe", "--moe_base_projector", "pargo", *PARGO_FLAGS, "--moe_num_experts", "3",
        "--learning_rate", str(STAGE2_LR), "--pretrain_mm_mlp_adapter", str(root / "stage1" / MM_PROJECTOR_FILE),
        "--log_level", "info"])
    status = run_torchrun(flags, root / "log.txt", PARROT_TEST_PROBE=str(root / "probe.pt"))
    log = (root / "log.txt").read_text()
    assert status == 0, log[-4000:]
    return {"stage1": root / "stage1", "out": root / "out", "log": log,
            "probe": torch.load(root / "probe.pt", weights_only=False)}


def test_zero2_stage1_trains_on_two_processes_and_its_projector_reproduces_the_model(zero2_stage1, tiny_assets):
    state = json.loads((zero2_stage1["out"] / "trainer_state.json").read_text())
    assert state["log_history"][0]["epoch"] == pytest.approx(2 * 2 / 16)  # 2 ranks x batch 2 of 16 items
    _, model, _, _ = load_pretrained_model(str(zero2_stage1["out"]), model_base=str(tiny_assets["llama"]))
    probe = zero2_stage1["probe"]
    torch.testing.assert_close(logits_of(model, probe["batch"]), probe["logits"], atol=1e-4, rtol=1e-4)


def test_zero2_stage1_checkpoint_holds_the_projector_and_leaves_the_frozen_model_out(zero2_stage1):
    checkpoint = zero2_stage1["out"] / "checkpoint-2"
    names = {p.name for p in checkpoint.iterdir()}
    assert {MM_PROJECTOR_FILE, COMPLETE_MARKER, "global_step2"} <= names and "model.safetensors" not in names
    module = torch.load(checkpoint / "global_step2" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    # DeepSpeed keeps the alias of a tied frozen weight (lm_head = embed_tokens); nothing else frozen.
    assert {k for k in module if not k.startswith("mm_projector.")} <= {"language_model.lm_head.weight"}


def test_zero3_loads_the_stage1_projector_into_partitioned_parameters(zero3_stage2, zero2_stage1):
    assert "loaded 4 projector tensors from" in zero3_stage2["log"]
    assert "into ZeRO-3 partitions" in zero3_stage2["log"].split("loaded 4 projector tensors from", 1)[1].split("\n")[0]
    stage1 = read_projector_file(str(zero2_stage1["out"] / MM_PROJECTOR_FILE))
    saved = load_file(zero3_stage2["out"] / "model.safetensors")
    for name, weight in stage1.items():
        # Two AdamW steps move each weight by at most ~2 x lr from where stage 1 left it.
        torch.testing.assert_close(saved[f"mm_projector.{name}"], weight, atol=3 * STAGE2_LR, rtol=0)
    assert any(k.startswith("mm_projector.moe.") for k in saved)


def test_zero3_loads_the_vision_tower_weights_into_partitioned_parameters(zero3_stage2, tiny_assets):
    assert "into ZeRO-3 partitions" in zero3_stage2["log"].split("loaded vision tower weights from", 1)[1].split("\n")[0]
    pretrained = load_file(tiny_assets["clip"] / "model.safetensors")
    saved = load_file(zero3_stage2["out"] / "model.safetensors")
    for name, weight in pretrained.items():
        assert torch.equal(saved[f"vision_tower.encoder.{name}"], weight), name


def test_zero3_consolidated_weights_reload_in_one_process_with_the_same_logits(zero3_stage2):
    _, model, _, _ = load_pretrained_model(str(zero3_stage2["out"]))
    assert model.config.mm_projector_type == "parrot_moe"
    probe = zero3_stage2["probe"]
    torch.testing.assert_close(logits_of(model, probe["batch"]), probe["logits"], atol=1e-4, rtol=1e-4)


def test_zero3_lora_output_merges_onto_the_base_llm_with_the_same_logits(zero3_lora, tiny_assets):
    _, model, _, _ = load_pretrained_model(str(zero3_lora["out"]), model_base=str(tiny_assets["llama"]))
    probe = zero3_lora["probe"]
    torch.testing.assert_close(logits_of(model, probe["batch"]), probe["logits"], atol=1e-4, rtol=1e-4)


def test_zero3_lora_saves_the_projector_and_moe_beside_the_adapter_and_nothing_frozen(zero3_lora):
    saved = load_file(zero3_lora["out"] / NON_LORA_TRAINABLES_FILE)
    assert set(saved) >= {"mm_projector.0.weight", "mm_projector.2.weight"}
    assert all(name.startswith("mm_projector.") for name in saved)  # no untouched embeddings, no LLM weights
    assert any(".moe." in name for name in saved)


def test_zero3_checkpoint_is_marked_complete_after_every_rank_wrote_its_shards(zero3_lora):
    checkpoint = zero3_lora["out"] / "checkpoint-2"
    assert (checkpoint / COMPLETE_MARKER).is_file()
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert len(list((checkpoint / "global_step2").glob("*optim_states.pt"))) == 2


@pytest.mark.slow
def test_zero3_loads_a_stage1_pargo_projector_into_parrot_moe_on_pargo(zero3_parrot_on_pargo):
    stage1 = read_projector_file(str(zero3_parrot_on_pargo["stage1"] / MM_PROJECTOR_FILE))
    loaded = zero3_parrot_on_pargo["log"].split(f"loaded {len(stage1)} projector tensors from", 1)[1].split("\n")[0]
    assert "into ZeRO-3 partitions" in loaded
    saved = load_file(zero3_parrot_on_pargo["out"] / "model.safetensors")
    for name, weight in stage1.items():
        torch.testing.assert_close(saved[f"mm_projector.{name}"], weight, atol=3 * STAGE2_LR, rtol=0)
    assert any(k.startswith("mm_projector.moe.") for k in saved)


@pytest.mark.slow
def test_zero3_parrot_moe_on_pargo_reloads_in_one_process_with_the_same_logits(zero3_parrot_on_pargo):
    _, model, _, _ = load_pretrained_model(str(zero3_parrot_on_pargo["out"]))
    assert (model.config.moe_base_projector, model.config.moe_router_query) == ("pargo", "summary_mean")
    probe = zero3_parrot_on_pargo["probe"]
    torch.testing.assert_close(logits_of(model, probe["batch"]), probe["logits"], atol=1e-4, rtol=1e-4)
