"""Moving weights between layouts without losing any: every expected tensor present, none left over,
every shape right, or a `ConversionError` that lists what is wrong.

Targets are built on the meta device (no memory, no random init) and receive the converted tensors
with `load_state_dict(assign=True)`, so converting a 7B model holds its weights once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn as nn

from llava.model.convert.base import ConversionError
from llava.model.hub_kernels import hub_kernel_kwargs

logger = logging.getLogger(__name__)

_SHOWN = 5  # names listed per problem in an error message


def _listing(names, limit: int = _SHOWN) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder: `model.safetensors`, sharded safetensors (with their index),
    or `pytorch_model*.bin` read with `weights_only=True`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for index_name, single, load in (
        ("model.safetensors.index.json", "model.safetensors", load_file),
        ("pytorch_model.bin.index.json", "pytorch_model.bin", _load_bin),
    ):
        if (folder / index_name).is_file():
            shards = sorted(set(json.loads((folder / index_name).read_text())["weight_map"].values()))
            tensors: dict[str, torch.Tensor] = {}
            for shard in shards:
                if not (folder / shard).is_file():
                    raise ConversionError(f"{folder / index_name} lists shard {shard}, which is missing; re-download it")
                tensors.update(load(str(folder / shard)))
            return tensors
        if (folder / single).is_file():
            return load(str(folder / single))
    raise ConversionError(f"{folder}: no model.safetensors, pytorch_model.bin or their sharded index; is this a checkpoint?")


def _load_bin(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def empty_model(build: Callable[[], nn.Module]) -> nn.Module:
    """`build()` on the meta device: the module tree and its shapes, without memory or initialisation."""
    with torch.device("meta"):
        return build()


def _tied_groups(model: nn.Module) -> list[list[str]]:
    """Names that share one parameter (tied embeddings), one list per shared parameter."""
    by_id: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(param), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


def _refuse(source: object, missing, mismatched: list[str], unexpected) -> None:
    problems = []
    if missing:
        problems.append(f"missing tensors {_listing(missing)}")
    if mismatched:
        problems.append(f"shape mismatches {_listing(mismatched)}")
    if unexpected:
        problems.append(f"unexpected tensors {_listing(unexpected)}")
    if problems:
        raise ConversionError(
            f"{source}: {'; '.join(problems)}. The weights do not fit the model its config.json describes; "
            "check that the config and the weights come from the same checkpoint"
        )


def check_tensors(expected: Mapping[str, torch.Size], state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise `ConversionError` naming missing, unexpected and mis-shaped tensors of `source`."""
    mismatched = [
        f"{name} {tuple(state[name].shape)} (expected {tuple(expected[name])})"
        for name in sorted(set(expected) & set(state))
        if tuple(state[name].shape) != tuple(expected[name])
    ]
    _refuse(source, set(expected) - set(state), mismatched, set(state) - set(expected))


def fill_into_empty(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Give a meta-device `model` the tensors of `state` (same names), checked first; returns it.

    Tied parameters (an LM head tied to the embeddings) need only one of their names in `state`.
    """
    state = dict(state)
    for group in _tied_groups(model):
        present = [name for name in group if name in state]
        for name in group:
            if present and name not in state:
                state[name] = state[present[0]]
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    check_tensors(expected, state, source)
    model.load_state_dict(state, strict=True, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    still_empty = [name for name, param in model.named_parameters() if param.is_meta]
    if still_empty:
        raise ConversionError(f"{source}: no tensor reached {_listing(still_empty)}")
    return model


def load_pretrained_strictly(model_class, path: Path, **kwargs):
    """`model_class.from_pretrained(path)`, refusing what transformers would only warn about: a missing
    tensor (it would be randomly initialised), an unexpected one, or a shape mismatch."""
    try:
        model, info = model_class.from_pretrained(
            path, output_loading_info=True, ignore_mismatched_sizes=True, **hub_kernel_kwargs(), **kwargs
        )
    except (OSError, ValueError) as error:
        raise ConversionError(f"{path}: transformers could not load it as {model_class.__name__}: {error}") from error
    mismatched = [f"{name} {tuple(got)} (expected {tuple(want)})" for name, got, want in info.get("mismatched_keys", ())]
    _refuse(path, info.get("missing_keys"), mismatched, info.get("unexpected_keys"))
    return model


def with_prefix(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + name: tensor for name, tensor in state.items()}
