"""The pargo projector through the public builder: its masks (window locality, partial/global
separation), its token count, the CLS it never reads, its flag validation and its registration."""

from importlib.metadata import entry_points
from types import SimpleNamespace

import pytest
import torch

from llava.model.multimodal_projector import build_vision_projector, get_projector_spec
from pargo.masks import cross_attention_mask, window_layout

D, C, P, G, GRID = 12, 16, 8, 2, 4
N = GRID * GRID
CPU = torch.device("cpu")


def _pargo(**fields):
    torch.manual_seed(0)
    config = SimpleNamespace(mm_projector_type="pargo", mm_hidden_size=D, hidden_size=C, pargo_hidden_size=8,
                             pargo_heads=2, pargo_num_partial_queries=P, pargo_num_global_queries=G)
    config.__dict__.update(fields)
    return build_vision_projector(config).double()


def _patches(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, N, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _tokens(proj, patches) -> torch.Tensor:
    with torch.no_grad():
        return proj(patches).visual_tokens


def test_paper_shapes_give_each_partial_query_two_horizontally_adjacent_patches():
    mask = cross_attention_mask(window_layout(576, 288, None), 576, 16, CPU)
    assert mask.shape == (304, 576) and mask[288:].all()
    seen = mask[:288].nonzero()[:, 1].view(288, 2)
    torch.testing.assert_close(seen, torch.arange(576).view(288, 2))
    assert torch.equal(seen[:, 0] // 24, seen[:, 1] // 24)  # the two patches share a grid row


def test_explicit_window_cuts_the_grid_in_raster_order():
    mask = cross_attention_mask(window_layout(N, 4, (2, 2)), N, 0, CPU)
    assert mask[1].nonzero().flatten().tolist() == [2, 3, 6, 7]


def test_with_one_layer_a_partial_query_reads_only_its_window():
    proj = _pargo(pargo_layers=1)
    query, window = 5, [10, 11]  # 4x4 grid, windows of 1x2: window 5 is row 2, columns 2-3
    patches = _patches()
    outside = torch.ones(N, dtype=torch.bool)
    outside[window] = False
    elsewhere = patches.clone()
    elsewhere[:, outside] += torch.randn_like(elsewhere[:, outside])
    inside = patches.clone()
    inside[:, window[0]] += torch.randn_like(inside[:, window[0]])  # not a constant: the patches are layer-normed
    before = _tokens(proj, patches)
    torch.testing.assert_close(_tokens(proj, elsewhere)[:, query], before[:, query], rtol=0, atol=1e-12)
    assert not torch.allclose(_tokens(proj, elsewhere)[:, P:], before[:, P:])  # the global queries saw it
    assert not torch.allclose(_tokens(proj, inside)[:, query], before[:, query])


@pytest.mark.parametrize("perturbed, unchanged", [(slice(0, P), slice(P, P + G)), (slice(P, P + G), slice(0, P))])
def test_at_any_depth_partial_and_global_queries_never_mix(perturbed, unchanged):
    proj = _pargo(pargo_layers=3)
    patches = _patches()
    before = _tokens(proj, patches)
    with torch.no_grad():
        proj.queries.embeddings[perturbed] += torch.randn_like(proj.queries.embeddings[perturbed])
    after = _tokens(proj, patches)
    torch.testing.assert_close(after[:, unchanged], before[:, unchanged], rtol=0, atol=1e-12)
    assert not torch.allclose(after[:, perturbed], before[:, perturbed])


def test_output_is_partial_then_global_tokens_at_llm_width():
    proj = _pargo()
    assert _tokens(proj, _patches(3)).shape == (3, P + G, C)
    assert proj.num_output_tokens(N) == P + G and proj.summary_tokens(N) == slice(P, P + G)
    assert not proj.wants_cls_token and not proj.requires_text_guidance


def test_the_cls_row_is_dropped_under_cls_patch():
    patches = _patches()
    with_cls = torch.cat([torch.randn(2, 1, D, dtype=torch.float64), patches], dim=1)
    expected = _tokens(_pargo(mm_vision_select_feature="patch"), patches)
    cls_patch = _pargo(mm_vision_select_feature="cls_patch")
    assert cls_patch.num_output_tokens(N) == P + G
    torch.testing.assert_close(_tokens(cls_patch, with_cls), expected, rtol=0, atol=0)


def test_without_global_queries_there_are_no_summary_tokens():
    proj = _pargo(pargo_num_global_queries=0)
    assert proj.summary_tokens(N) is None and _tokens(proj, _patches()).shape[1] == P


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"pargo_num_partial_queries": 6}, r"--pargo_num_partial_queries 6 does not tile the 4x4 patch grid.*\[1, 2, 4, 8, 16\]"),
        ({"pargo_window": "3x1", "pargo_num_partial_queries": 4}, "--pargo_window 3x1 does not divide the 4x4"),
        ({"pargo_window": "2x2"}, "into 4 windows, but --pargo_num_partial_queries is 8"),
    ],
)
def test_windows_that_do_not_tile_the_grid_are_refused_before_training(fields, message):
    with pytest.raises(ValueError, match=message):
        _pargo(**fields).num_output_tokens(N)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"pargo_hidden_size": 10, "pargo_heads": 4}, "--pargo_hidden_size 10 is not divisible by --pargo_heads 4"),
        ({"pargo_window": "2by2"}, "--pargo_window '2by2' is not HxW"),
        ({"pargo_num_partial_queries": 0, "pargo_num_global_queries": 0}, "both 0"),
        ({"pargo_layers": 0}, "--pargo_layers must be an integer >= 1"),
    ],
)
def test_invalid_flags_are_refused_naming_the_flag(fields, message):
    with pytest.raises(ValueError, match=message):
        _pargo(**fields)


def test_a_non_square_patch_grid_is_refused():
    with pytest.raises(ValueError, match="square patch grid.*15 patches"):
        _pargo().num_output_tokens(15)


def test_the_entry_point_names_the_registered_spec():
    [entry] = [ep for ep in entry_points(group="llava.projectors") if ep.name == "pargo"]
    assert entry.value == "pargo:PARGO" and entry.load() is get_projector_spec("pargo")
