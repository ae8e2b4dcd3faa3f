"""What our format and transformers' `LlavaForConditionalGeneration` have in common, and where they part.

transformers' Llava is: vision tower hidden state `vision_feature_layer`, the CLS row dropped under
`vision_feature_select_strategy="default"` (kept under `"full"`), then `linear_1 -> act -> linear_2`
(`multi_modal_projector`), spliced in at `image_seq_length` copies of the image token that its
processor writes into the text. Ours (see `llava.model.modeling_llava`) maps onto it as follows:

| ours                                        | transformers Llava                                   |
|---------------------------------------------|------------------------------------------------------|
| `mm_vision_select_layer`                    | `vision_feature_layer`                               |
| `patch` on a tower with CLS (CLIP, Chinese-CLIP) | `default` (drops row 0)                         |
| `cls_patch` on a tower with CLS             | `full`                                               |
| `patch` on SigLIP (no CLS)                  | `full` (row 0 is a real patch there)                 |
| `mlp2x_gelu`: `0`, GELU, `2`                | `linear_1`, `gelu`, `linear_2`                       |
| `linear` / `mlp1x_gelu`: one Linear W       | `linear_1` = W, act `linear` (identity), `linear_2` = I, bias 0 (exact) |
| `image_aspect_ratio pad`                    | `LlavaImageProcessor(do_pad=True)` (same mean-colour padding) |

Not expressible there (a `ConversionError` that says so): `mlp{N}x_gelu` with N > 2, plugin projectors
(`parrot_moe` routes on the prompt text; `pargo` emits a different token count), `cls_patch` on SigLIP
(our mean-of-patches row), and `--mm_use_im_start_end`. Plugin projectors whose `ProjectorSpec` has an
`export` hook (parrot_moe, pargo) are written as transformers' Llava plus remote code for the projector
instead (`llava.model.convert.remote`).
"""

from __future__ import annotations

import torch

from llava.model.convert.base import OUR_ENGINES, ConversionError
from llava.model.multimodal_encoder.vision_tower import VISION_TOWERS_WITH_CLS

EXPORTABLE_PROJECTORS = ("linear", "mlp1x_gelu", "mlp2x_gelu")


def has_remote_export(projector_type: str) -> bool:
    """Whether the registered projector `projector_type` can be exported as remote code (its `export` hook)."""
    from llava.model.multimodal_projector.builder import get_projector_spec

    try:
        return get_projector_spec(projector_type).export is not None
    except ValueError:
        return False


def check_exportable(config, source: object, remote_ok: bool = False) -> None:
    """Refuse, with the reason and where it can be served, a checkpoint transformers' Llava cannot express
    (with `remote_ok`, a projector with a remote-code export is accepted: see `llava.model.convert.remote`)."""
    projector = config.mm_projector_type
    if not config.has_vision:
        raise ConversionError(f"{source}: a text-only checkpoint (no vision tower); save its language_model instead")
    if projector not in EXPORTABLE_PROJECTORS and not (remote_ok and has_remote_export(projector)):
        raise ConversionError(
            f"{source}: mm_projector_type {projector!r} cannot be expressed as transformers' Llava, whose projector "
            f"is one Linear-act-Linear ({', '.join(EXPORTABLE_PROJECTORS)} can). Serve this checkpoint with "
            f"{OUR_ENGINES}; transformers' Llava classes, vLLM, SGLang and TGI cannot run it"
        )
    if config.mm_use_im_start_end:
        raise ConversionError(
            f"{source}: trained with --mm_use_im_start_end, which wraps the image in <im_start>/<im_end> tokens "
            f"that transformers' Llava processor does not write; serve it with {OUR_ENGINES}"
        )
    if config.mm_vision_select_feature == "cls_patch" and not has_cls_token(config.vision_config):
        raise ConversionError(
            f"{source}: --mm_vision_select_feature cls_patch on a {config.vision_config.model_type} tower feeds a "
            f"mean-of-patches row that transformers' Llava cannot compute; serve it with {OUR_ENGINES}"
        )


def has_cls_token(vision_config) -> bool:
    return vision_config.model_type in VISION_TOWERS_WITH_CLS


def select_strategy(select_feature: str, vision_config) -> str:
    """Our `mm_vision_select_feature` as transformers' `vision_feature_select_strategy`."""
    if not has_cls_token(vision_config):
        return "full"
    return "full" if select_feature == "cls_patch" else "default"


def select_feature(strategy: str, vision_config, source: object) -> str:
    """transformers' `vision_feature_select_strategy` as our `mm_vision_select_feature`."""
    if has_cls_token(vision_config):
        return "cls_patch" if strategy == "full" else "patch"
    if strategy == "default":
        raise ConversionError(
            f"{source}: vision_feature_select_strategy 'default' drops the first patch of a "
            f"{vision_config.model_type} tower (it has no CLS); our towers never drop a real patch"
        )
    return "patch"


def projector_to_hf(projector_type: str, state: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """Our projector tensors -> (projector_hidden_act, `linear_1.*`/`linear_2.*` tensors)."""
    if projector_type == "mlp2x_gelu":
        return "gelu", {f"linear_{i}.{kind}": state[f"{j}.{kind}"] for i, j in ((1, 0), (2, 2)) for kind in ("weight", "bias")}
    prefix = "" if projector_type == "linear" else "0."
    weight, bias = state[prefix + "weight"], state[prefix + "bias"]
    width = weight.shape[0]
    identity = torch.eye(width, dtype=weight.dtype)
    return "linear", {
        "linear_1.weight": weight,
        "linear_1.bias": bias,
        "linear_2.weight": identity,
        "linear_2.bias": torch.zeros(width, dtype=bias.dtype),
    }


def projector_from_hf(act: str, state: dict[str, torch.Tensor], source: object) -> tuple[str, dict[str, torch.Tensor]]:
    """transformers' `multi_modal_projector` tensors -> (our mm_projector_type, our projector tensors).

    A missing bias (`multimodal_projector_bias=False`) becomes zeros. Activation `linear` folds the two
    layers into one `linear` projector (computed in float64; exact when `linear_2` is the identity, as
    `to-hf` writes it).
    """
    weight_1, weight_2 = state["linear_1.weight"], state["linear_2.weight"]
    bias_1 = state.get("linear_1.bias", torch.zeros(weight_1.shape[0], dtype=weight_1.dtype))
    bias_2 = state.get("linear_2.bias", torch.zeros(weight_2.shape[0], dtype=weight_2.dtype))
    if act == "gelu":
        return "mlp2x_gelu", {"0.weight": weight_1, "0.bias": bias_1, "2.weight": weight_2, "2.bias": bias_2}
    if act == "linear":
        w2 = weight_2.double()
        folded_weight = (w2 @ weight_1.double()).to(weight_1.dtype)
        folded_bias = (w2 @ bias_1.double() + bias_2.double()).to(bias_1.dtype)
        return "linear", {"weight": folded_weight, "bias": folded_bias}
    raise ConversionError(
        f"{source}: projector_hidden_act {act!r} has no counterpart here (mlp2x_gelu uses the exact GELU, "
        "`gelu`; `linear` folds into one Linear)"
    )
