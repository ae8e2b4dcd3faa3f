"""parrot_moe through the training CLI: flags, stage control, logging, reload, generation, analysis."""

import json

import pytest
import torch
from training_helpers import common_flags, train_capturing_initial_weights

from llava.constants import MM_PROJECTOR_FILE
from llava.model.builder import load_pretrained_model
from llava.train.train import parse_args, train

MOE_FLAGS = ["--mm_projector_type", "parrot_moe", "--moe_num_experts", "4", "--moe_top_k", "2",
             "--moe_aux_loss_coef", "0.01", "--moe_expert_type", "swiglu", "--moe_residual_mode", "official"]


def with_parrot(flags):
    flags = list(flags)
    at = flags.index("--mm_projector_type")
    del flags[at : at + 2]
    return flags + MOE_FLAGS


@pytest.fixture(scope="module")
def multilingual_data(tiny_data, tmp_path_factory):
    items = json.loads(tiny_data["instructions"].read_text())
    for i, item in enumerate(items):
        item["lang"] = ["en", "zh", "pt"][i % 3]
    path = tmp_path_factory.mktemp("ml") / "instructions.json"
    path.write_text(json.dumps(items))
    return dict(tiny_data, instructions=path)


@pytest.fixture(scope="module")
def mlp_stage1(tiny_assets, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mlp_stage1")
    train(common_flags(tiny_assets, tiny_data, out, stage=1))
    return out / MM_PROJECTOR_FILE


@pytest.fixture(scope="module")
def parrot_stage2(tiny_assets, multilingual_data, mlp_stage1, tmp_path_factory):
    out = tmp_path_factory.mktemp("parrot_stage2")
    flags = with_parrot(common_flags(tiny_assets, multilingual_data, out, stage=2,
                                     extra=["--pretrain_mm_mlp_adapter", str(mlp_stage1), "--max_steps", "3"]))
    trainer, before = train_capturing_initial_weights(flags)
    return {"out": out, "trainer": trainer, "before": before}


def changed(before, model):
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


def test_moe_flags_parse_and_are_saved_under_their_names(parrot_stage2):
    config = json.loads((parrot_stage2["out"] / "config.json").read_text())
    assert config["mm_projector_type"] == "parrot_moe"
    assert (config["moe_num_experts"], config["moe_top_k"], config["moe_expert_type"]) == (4, 2, "swiglu")
    assert (config["moe_residual_mode"], config["moe_aux_loss_coef"]) == ("official", 0.01)
    assert "moe_intermediate_size" in config and "freeze_moe" in config


def test_unknown_moe_value_names_the_flag(tiny_assets, tiny_data, tmp_path):
    flags = with_parrot(common_flags(tiny_assets, tiny_data, tmp_path, stage=2)) + ["--moe_expert_type", "relu"]
    with pytest.raises(ValueError, match="--moe_expert_type"):
        train(flags)


def test_stage2_trains_base_projector_moe_and_llm_but_not_vision(parrot_stage2):
    diff = changed(parrot_stage2["before"], parrot_stage2["trainer"].model)
    assert any(n.startswith("mm_projector.moe.") for n in diff)
    assert {"mm_projector.0.weight", "mm_projector.2.weight"} <= diff
    assert any(n.startswith("language_model.") for n in diff)
    assert not any(n.startswith("vision_tower.") for n in diff)


def test_mlp2x_gelu_stage1_projector_loads_into_parrot_stage2(parrot_stage2, mlp_stage1):
    stage1 = torch.load(mlp_stage1, weights_only=True)
    before = parrot_stage2["before"]
    for key, value in stage1.items():
        assert torch.equal(before[key.replace("model.", "", 1)], value)


def test_aux_loss_and_per_language_routing_are_logged(parrot_stage2):
    logs = [entry for entry in parrot_stage2["trainer"].state.log_history if "loss" in entry]
    assert all("aux_loss" in entry and entry["aux_loss"] > 0 for entry in logs)
    keys = set().union(*logs)
    for lang in ("en", "zh", "pt"):
        assert f"routing/{lang}/entropy" in keys
        assert {f"routing/{lang}/expert_{i}" for i in range(4)} <= keys


def test_stage1_with_parrot_bypasses_and_freezes_the_moe(tiny_assets, tiny_data, tmp_path):
    trainer, before = train_capturing_initial_weights(with_parrot(common_flags(tiny_assets, tiny_data, tmp_path, stage=1)))
    diff = changed(before, trainer.model)
    assert diff == {n for n in before if n.startswith("mm_projector.") and ".moe." not in n}
    projector = trainer.model.mm_projector
    assert projector.moe_bypass is True
    features = torch.randn(2, 1 + trainer.model.vision_tower.num_patches, trainer.model.config.mm_hidden_size)
    out = projector(features, text_embeds=torch.randn(2, 3, trainer.model.config.hidden_size))
    assert out.metrics == {} and out.aux_loss is None


def test_freeze_moe_overrides_stage2(tiny_assets, tiny_data, tmp_path):
    flags = with_parrot(common_flags(tiny_assets, tiny_data, tmp_path, stage=2)) + ["--freeze_moe", "True"]
    trainer, before = train_capturing_initial_weights(flags)
    diff = changed(before, trainer.model)
    assert not any(".moe." in n for n in diff)
    assert "mm_projector.0.weight" in diff and trainer.model.mm_projector.moe_bypass is False


def test_plugin_flags_are_only_known_with_the_plugin_projector(tiny_assets, tiny_data, tmp_path):
    with pytest.raises(ValueError, match="--mm_projector_type mlp2x_gelu"):
        parse_args(common_flags(tiny_assets, tiny_data, tmp_path, stage=2) + ["--moe_num_experts", "3"])


def test_saved_parrot_model_reloads_generates_and_reports_routing(parrot_stage2):
    from PIL import Image

    from llava.inference import build_prompt, generate_batch, generation_inputs
    from llava.model.multimodal_projector import ROUTING_METRIC

    tokenizer, model, processor, _ = load_pretrained_model(str(parrot_stage2["out"]))
    assert model.mm_projector.settings.num_experts == 4 and model.mm_projector.settings.top_k == 2
    questions, images = ["What colour?", "什么颜色？"], [Image.new("RGB", (32, 32), "red")] * 2
    answers = generate_batch(model, tokenizer, processor, questions, images, max_new_tokens=4)
    assert len(answers) == 2
    prompts = [build_prompt(model, q, has_image=True) for q in questions]
    ids, mask, pixels = generation_inputs(model, tokenizer, processor, prompts, images)
    _, projected = model.prefill_inputs(ids, pixels, mask)
    routing = projected.metrics[ROUTING_METRIC]
    assert routing.shape == (2, 4) and torch.allclose(routing.sum(-1), torch.ones(2))


def test_analysis_cli_writes_png_and_csv(parrot_stage2, multilingual_data, tmp_path):
    from parrot_moe.analysis import main

    main(["--model-path", str(parrot_stage2["out"]), "--data", str(multilingual_data["instructions"]),
          "--image-folder", str(multilingual_data["images"]), "--out", str(tmp_path)])
    rows = (tmp_path / "expert_distribution.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[:2] == ["lang", "n"] and header[2 + 4:] == [
        "entropy", "guidance_recovery", "entropy_ratio", "routing_recovery", "logit_spread"]
    assert sorted(r.split(",")[0] for r in rows[1:]) == ["en", "pt", "zh"]
    for row in rows[1:]:
        ratio = float(row.split(",")[header.index("entropy_ratio")])
        assert 0.0 <= ratio <= 1.0 + 1e-6
    report = (tmp_path / "routing_diagnostics.md").read_text()
    assert "guidance → language" in report and "English" in report and "Portuguese" in report
    assert (tmp_path / "expert_distribution.png").read_bytes()[:4] == b"\x89PNG"
