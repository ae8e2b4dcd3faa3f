"""parrot_moe settings from a model config, registration, and upstream mm_projector.bin compatibility."""

from types import SimpleNamespace

import pytest
import torch
from transformers import PretrainedConfig

from llava.model.multimodal_projector.builder import build_vision_projector, get_projector_spec
from parrot_moe import ParrotMoeArguments, ParrotMoeSettings, RoutingLogCallback, build_parrot_moe_projector

D, C = 12, 16


def _config(**fields) -> SimpleNamespace:
    return SimpleNamespace(
        **{"mm_projector_type": "parrot_moe", "mm_hidden_size": D, "hidden_size": C, **fields}
    )


def test_importing_the_plugin_registers_factory_flags_and_routing_log():
    spec = get_projector_spec("parrot_moe")
    assert spec.factory is build_parrot_moe_projector and spec.arguments is ParrotMoeArguments
    assert [type(cb) for cb in spec.make_callbacks()] == [RoutingLogCallback]
    assert spec.stacks_on == "moe_base_projector"


def test_defaults_are_the_papers_dense_setting():
    s = ParrotMoeSettings.from_config(_config())
    assert (s.num_experts, s.top_k, s.intermediate_size, s.expert_type) == (6, 6, C, "mlp_silu")
    assert (s.residual_mode, s.alpha, s.aux_loss_coef, s.renormalize_top_k, s.emit_cls) == (
        "paper",
        1.0,
        0.0,
        False,
        False,
    )


def test_official_residual_mode_defaults_alpha_to_one_tenth():
    assert ParrotMoeSettings.from_config(_config(moe_residual_mode="official")).alpha == 0.1


def test_explicit_alpha_overrides_the_mode_default():
    assert ParrotMoeSettings.from_config(_config(moe_residual_mode="official", moe_alpha=0.5)).alpha == 0.5


def test_cls_patch_emits_the_cls_token():
    assert ParrotMoeSettings.from_config(_config(mm_vision_select_feature="cls_patch")).emit_cls


@pytest.mark.parametrize(
    "fields, flag",
    [
        ({"moe_top_k": 7}, "--moe_top_k"),
        ({"moe_top_k": 0}, "--moe_top_k"),
        ({"moe_expert_type": "gelu"}, "--moe_expert_type"),
        ({"moe_residual_mode": "both"}, "--moe_residual_mode"),
        ({"mm_vision_select_feature": "cls"}, "--mm_vision_select_feature"),
        ({"moe_aux_loss_coef": -1.0}, "--moe_aux_loss_coef"),
    ],
)
def test_invalid_setting_error_names_the_flag(fields, flag):
    with pytest.raises(ValueError, match=flag):
        ParrotMoeSettings.from_config(_config(**fields))


def test_renormalized_top_1_warns_that_the_router_gets_no_gradient(caplog):
    ParrotMoeSettings.from_config(_config(moe_top_k=1, moe_renormalize_top_k=True))
    assert "no gradient" in caplog.text


def test_missing_hidden_size_error_names_the_field():
    with pytest.raises(ValueError, match="hidden_size"):
        ParrotMoeSettings.from_config(SimpleNamespace(mm_hidden_size=D))


def test_settings_survive_a_config_json_round_trip(tmp_path):
    moe = dict(
        moe_num_experts=4,
        moe_top_k=2,
        moe_renormalize_top_k=True,
        moe_expert_type="swiglu",
        moe_intermediate_size=24,
        moe_residual_mode="official",
        moe_alpha=0.2,
        moe_aux_loss_coef=0.01,
    )
    config = PretrainedConfig(mm_hidden_size=D, hidden_size=C, mm_vision_select_feature="cls_patch", **moe)
    config.save_pretrained(tmp_path)
    restored = PretrainedConfig.from_pretrained(tmp_path)
    assert ParrotMoeSettings.from_config(restored) == ParrotMoeSettings.from_config(config)
    assert ParrotMoeSettings.from_config(restored).top_k == 2


def test_upstream_mlp2x_gelu_checkpoint_loads_into_the_base_projector(tmp_path):
    torch.manual_seed(0)
    plain = build_vision_projector(_config(mm_projector_type="mlp2x_gelu"))
    # Stage 1 saves the projector as mm_projector.bin with the model's key prefix, as upstream LLaVA.
    torch.save(
        {f"model.mm_projector.{k}": v for k, v in plain.state_dict().items()}, tmp_path / "mm_projector.bin"
    )
    proj = build_vision_projector(_config(moe_top_k=2))
    saved = torch.load(tmp_path / "mm_projector.bin", weights_only=True)
    result = proj.load_state_dict({k.split("mm_projector.")[1]: v for k, v in saved.items()}, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(k.startswith("moe.") for k in result.missing_keys)
    proj.moe_bypass = True
    image = torch.randn(2, 5, D)
    assert torch.equal(proj(image).visual_tokens, plain(image).visual_tokens[:, 1:])
