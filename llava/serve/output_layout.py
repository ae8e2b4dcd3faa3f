"""Store the output layer's weight column-major on the CPU, so batched decoding steps read it fast.

The output layer (`lm_head`, vocabulary x hidden) is the largest matmul of a decoding step of a
small model. `F.linear(x, W)` computes `x @ W.t()`; with `W` stored row-major (PyTorch's default)
MKL's kernel for a few rows x a vocabulary-wide output is slow: on one thread (AVX-512), 8 rows x
(128 -> 49,152) cost 1.9 ms against 0.93 ms for 1 row, so a batch of 8 could never be more than
about 3.9x faster than 8 single rows. With the same values stored transposed (`W.t()` contiguous,
`W` a view of it) the 8-row product takes about 1.2 ms and the 1-row product is unchanged (it is
bound by reading the weight once). The values are the same; only the kernel's summation order may
change, by float rounding (the last bit of some logits).

The weight keeps its shape and its Parameter object, so an output layer tied to the input
embeddings stays tied (an embedding lookup then reads a strided row, which costs nothing that
shows at decoding sizes). Only float32 weights on the CPU are changed, the case measured above.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def column_major_output_weight(llm: torch.nn.Module) -> bool:
    """Re-store `llm`'s output-layer weight transposed in memory (same values, same Parameter) when it
    is a float32 CPU `nn.Linear`; True when it was changed or already stored that way."""
    head = llm.get_output_embeddings() if hasattr(llm, "get_output_embeddings") else None
    if type(head) is not torch.nn.Linear:
        return False
    weight = head.weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.dim() != 2:
        return False
    if weight.t().is_contiguous():
        return True
    with torch.no_grad():
        weight.data = weight.data.t().contiguous().t()
    logger.debug("stored the output layer's %s weight column-major for batched decoding", tuple(weight.shape))
    return True
