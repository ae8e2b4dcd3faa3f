"""Reading and writing whole parameters when DeepSpeed ZeRO-3 has partitioned them.

Under ZeRO-3 every rank keeps only a shard of each parameter: `param.data` is an empty tensor
(torch.Size([0])) and `param.ds_shape` holds the real shape. Copying weights in or out (a stage-1
projector, pretrained vision weights, a saved adapter's neighbours) therefore needs a gather, and a
gather is a collective: every rank must enter it, with the same parameters, in the same order.
Outside ZeRO-3 these helpers do nothing, so callers use them unconditionally.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
import torch.nn as nn


def zero3_init_context() -> contextlib.AbstractContextManager:
    """Under ZeRO-3, modules built inside this context are partitioned as they are created, like an LLM
    that `from_pretrained` already loaded partitioned; weights are then copied in by gathering.
    Elsewhere a no-op."""
    from transformers.integrations import deepspeed_config, is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    from llava.optional import require_deepspeed

    return require_deepspeed().zero.Init(config_dict_or_path=deepspeed_config())


def is_partitioned(param: torch.Tensor) -> bool:
    """True for a ZeRO-3 parameter (it carries DeepSpeed's `ds_id`)."""
    return hasattr(param, "ds_id")


def full_shape(param: torch.Tensor) -> torch.Size:
    """The parameter's real shape, also when ZeRO-3 has partitioned it."""
    return param.ds_shape if is_partitioned(param) else param.shape


@contextlib.contextmanager
def gathered(params: Iterable[torch.Tensor], modifier_rank: int | None = None) -> Iterator[None]:
    """Make partitioned parameters whole inside the block.

    With `modifier_rank=r`, what rank r writes into them is broadcast and re-partitioned on exit
    (all ranks may write the same values; rank r's win). Without it the block must only read.
    """
    params = [p for p in params if is_partitioned(p)]
    if not params:
        yield
        return
    from llava.optional import require_deepspeed

    deepspeed = require_deepspeed()
    with deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank):
        yield


def gathered_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of `module.state_dict()` with full tensors on every rank."""
    with gathered(module.parameters()):
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load_state_dict_gathered(module: nn.Module, state: dict[str, torch.Tensor], strict: bool = True):
    """`module.load_state_dict(state)` that also works on ZeRO-3-partitioned parameters.

    Returns the `(missing_keys, unexpected_keys)` result of `load_state_dict`.
    """
    with gathered(module.parameters(), modifier_rank=0):
        return module.load_state_dict(state, strict=strict)
