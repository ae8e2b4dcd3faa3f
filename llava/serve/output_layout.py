"""The output layer of decoding steps on the CPU, with its weight stored column-major.

The output layer (`lm_head`, vocabulary x hidden) is the largest matmul of a decoding step of a
small model. `F.linear(x, W)` computes `x @ W.t()`; with `W` stored row-major (PyTorch's default)
MKL's kernel for a few rows x a vocabulary-wide output is slow: on one thread (AVX-512), 8 rows x
(128 -> 49,152) cost 1.9 ms against 0.93 ms for 1 row, so a batch of 8 could never be more than
about 3.9x faster than 8 single rows. With the same values stored transposed (`W.t()`
contiguous) the 8-row product takes about 1.2 ms; a single row keeps the row-major weight, whose
matrix-vector kernel is a little faster (both are bound by reading the weight once). The values are the same; only the kernel's summation order may differ,
by float rounding (the last bit of some logits).

The model's own weight is left as it is (`save_pretrained` needs it contiguous, and it may be tied
to the input embeddings). `OutputProjection` keeps a transposed copy, made again whenever the
weight changed (another tensor, or an in-place update such as an optimizer step), and `installed()`
routes the head's forward through it for the duration of a decoding forward: the LLM's own forward
(and hooks on it) still run. A call with gradients enabled takes the head's usual path, so
training never meets the detached copy. The copy costs one more vocabulary x hidden matrix of
memory, so it is made only for float32 CPU weights, the case measured above, and only where the
LLM's logits are exactly `lm_head(decoder(...))` (see `llava.model.supervised_loss`).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from llava.model.supervised_loss import supports_supervised_loss

_shared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # head -> its projection
_shared_lock = threading.Lock()


class OutputProjection:
    """`lm_head` of an LLM applied through a column-major copy of its weight (see `installed`)."""

    def __init__(self, head: torch.nn.Linear):
        self.head = head
        self._key: tuple | None = None
        self._transposed: torch.Tensor | None = None
        self._lock = threading.Lock()
        self._users = 0  # blocks inside `installed`, over every engine of this head

    @classmethod
    def for_llm(cls, llm: torch.nn.Module) -> OutputProjection | None:
        """The projection of `llm`'s head (one per head, shared by every engine over the model), or
        None where it does not apply (see the module's docstring)."""
        if not supports_supervised_loss(llm):
            return None
        head = llm.get_output_embeddings()
        if type(head) is not torch.nn.Linear:
            return None
        weight = head.weight
        if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.dim() != 2:
            return None
        with _shared_lock:
            if head not in _shared:
                _shared[head] = cls(head)
            return _shared[head]

    def weight(self) -> torch.Tensor:
        """The head's weight (V, H) as a view of a contiguous (H, V) copy, made again when the
        weight's tensor or version changed since the last copy."""
        weight = self.head.weight
        key = (id(weight), weight.data_ptr(), weight._version)
        with self._lock:
            if key != self._key:
                self._transposed, self._key = weight.detach().t().contiguous(), key
            return self._transposed.t()

    def _forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or hidden.numel() == hidden.shape[-1]:  # one row: the row-major gemv is faster
            return type(self.head).forward(self.head, hidden)
        # As a contiguous 2-D matrix: a strided 3-D input (the prefill's last positions) takes a slow path.
        rows = hidden.reshape(-1, hidden.shape[-1]).contiguous()
        return F.linear(rows, self.weight(), self.head.bias).view(*hidden.shape[:-1], -1)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Inside the block the head's forward uses the column-major copy (without gradients)."""
        with self._lock:
            self._users += 1
            if self._users == 1:
                self.head.forward = self._forward  # an instance attribute: nn.Module calls it
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    del self.head.forward
