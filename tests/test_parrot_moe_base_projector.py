"""parrot_moe on another base projector (`--moe_base_projector`): key names, the routing query, the
visual-token count, stage-1 files of the base, and the base's flags."""

from types import SimpleNamespace

import pytest
import torch

from llava.model.multimodal_projector import ROUTING_METRIC, build_vision_projector
from llava.model.projector_io import load_projector_weights
from llava.train.preflight import LaunchError
from llava.train.train import parse_args
from parrot_moe.router import route_by_text

D, C, E, P, G, N = 12, 16, 3, 8, 2, 16
PARGO = dict(pargo_layers=2, pargo_hidden_size=8, pargo_heads=2, pargo_num_partial_queries=P, pargo_num_global_queries=G)


def _config(**fields) -> SimpleNamespace:
    return SimpleNamespace(**{"mm_projector_type": "parrot_moe", "mm_hidden_size": D, "hidden_size": C,
                              "moe_num_experts": E, **fields})


def _build(config):
    torch.manual_seed(0)
    return build_vision_projector(config).double()


def _inputs():
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(2, 1 + N, D, generator=gen, dtype=torch.float64)
    text = torch.randn(2, 5, C, generator=gen, dtype=torch.float64)
    return image, text, torch.ones(2, 5, dtype=torch.bool)


def test_default_base_keeps_the_upstream_mlp_key_names_and_routes_on_the_cls():
    config = _config()
    proj = _build(config)
    assert sorted(k for k in proj.state_dict() if not k.startswith("moe.")) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert proj.router_query == config.moe_router_query == "cls"


def test_on_pargo_the_query_is_the_mean_of_the_global_tokens_and_the_image_costs_p_plus_g():
    config = _config(moe_base_projector="pargo", **PARGO)
    proj = _build(config)
    image, text, mask = _inputs()
    out = proj(image, text_embeds=text, text_mask=mask)
    assert proj.router_query == config.moe_router_query == "summary_mean"
    assert proj.num_output_tokens(N) == P + G and out.visual_tokens.shape == (2, P + G, C)
    query = proj.project(image)[:, P:].mean(dim=1)
    expected = proj.moe.router(route_by_text(query, text, mask))
    torch.testing.assert_close(out.metrics[ROUTING_METRIC], expected.detach())


def test_a_stage1_pargo_projector_file_loads_into_parrot_moe_on_pargo(tmp_path):
    pargo = _build(SimpleNamespace(mm_projector_type="pargo", mm_hidden_size=D, hidden_size=C, **PARGO))
    torch.save({f"model.mm_projector.{k}": v for k, v in pargo.state_dict().items()}, tmp_path / "mm_projector.bin")
    torch.manual_seed(1)  # another initialisation, so only the file can make the two agree
    proj = build_vision_projector(_config(moe_base_projector="pargo", **PARGO)).double()
    load_projector_weights(proj, str(tmp_path / "mm_projector.bin"))
    proj.set_training_stage(1, SimpleNamespace())  # stage 1: the MoE is bypassed, G_v = H_v
    image, _, _ = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(proj(image).visual_tokens, pargo(image[:, 1:]).visual_tokens, rtol=0, atol=0)


def test_eval_mode_reaches_the_base_projector():
    proj = _build(_config(moe_base_projector="pargo", **PARGO))
    proj.eval()
    assert not proj.base.training and not proj.layers[0].training
    proj.train()
    assert proj.base.training


def test_training_flags_of_the_base_are_parsed_and_saved_with_defaults_filled_in():
    *_, (moe_args, pargo_args) = parse_args(["--output_dir", "out", "--mm_projector_type", "parrot_moe",
                                             "--moe_base_projector", "pargo", "--pargo_layers", "2"])
    assert moe_args.moe_base_projector == "pargo"
    assert (pargo_args.pargo_layers, pargo_args.pargo_num_partial_queries) == (2, 288)


def test_a_flag_of_a_projector_that_is_not_the_base_is_refused():
    with pytest.raises(LaunchError, match=r"unknown flags \['--pargo_layers', '2'\].*--moe_base_projector"):
        parse_args(["--output_dir", "out", "--mm_projector_type", "parrot_moe", "--pargo_layers", "2"])


def test_the_default_base_adds_no_flags_of_other_projectors():
    *_, projector_args = parse_args(["--output_dir", "out", "--mm_projector_type", "parrot_moe"])
    assert [type(args).__name__ for args in projector_args] == ["ParrotMoeArguments"]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"moe_base_projector": "linear"}, "--moe_base_projector linear.*mlp1x_gelu"),
        ({"moe_base_projector": "parrot_moe"}, "--moe_base_projector parrot_moe"),
        ({"moe_base_projector": "no_such_projector"}, "--moe_base_projector no_such_projector: unknown"),
    ],
)
def test_unusable_base_projectors_are_refused_naming_the_flag(fields, message):
    with pytest.raises(ValueError, match=message):
        _build(_config(**fields))


def test_a_base_without_cls_or_summary_tokens_is_refused_before_training():
    proj = _build(_config(moe_base_projector="pargo", **{**PARGO, "pargo_num_global_queries": 0}))
    with pytest.raises(ValueError, match="neither a CLS row nor summary tokens.*--pargo_num_global_queries"):
        proj.num_output_tokens(N)
