"""The Parrot language experts (Eq 4), all E experts stored as stacked 3-D parameters.

Weights use `nn.Linear`'s (out, in) layout per expert, so expert i of a per-expert checkpoint maps
to slice `[i]`. Two expert types:

- `mlp_silu` (paper, Table 5): Linear C->I, SiLU, Linear I->C, with biases.
  Parameters `fc1_weight` (E, I, C), `fc1_bias` (E, I), `fc2_weight` (E, C, I), `fc2_bias` (E, C).
- `swiglu` (the authors' code): down(silu(gate(x)) * up(x)), no biases.
  Parameters `gate_up_proj` (E, 2I, C) (gate rows first, then up rows), `down_proj` (E, C, I).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _uniform_like_linear(tensor: torch.Tensor, fan_in: int) -> None:
    """nn.Linear's default init (kaiming_uniform with a=sqrt(5) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)))."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(tensor, -bound, bound)


class ExpertBank(nn.Module):
    """E experts of width C -> I -> C applied to whole samples, Mixtral style: the dispatch only.

    forward(hidden (B, N, C), weights (B, k), indices (B, k)) -> (B, N, C) where output row b is
    sum_j weights[b, j] * E_{indices[b, j]}(hidden[b]). Each expert runs once, on the samples that
    selected it (gathered with index_select, scattered back with index_add_); experts nobody
    selected do not run, so they get no gradient. What one expert computes, and its parameters,
    belong to the subclass of its `--moe_expert_type` (`make_experts` picks it).
    """

    expert_type: str = ""
    fan_in_of_output_side: tuple[str, ...] = ()  # parameters whose fan-in is I (the rest: C)

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise every expert like a fresh nn.Linear (also call this after meta-device loading)."""
        for name, param in self.named_parameters(recurse=False):
            fan_in = self.intermediate_size if name in self.fan_in_of_output_side else self.hidden_size
            _uniform_like_linear(param, fan_in)

    def expert_forward(self, hidden: torch.Tensor, expert: int) -> torch.Tensor:
        """E_expert(hidden): (..., C) -> (..., C)."""
        raise NotImplementedError(f"{type(self).__name__} must define expert_forward")

    def forward(self, hidden: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        batch = hidden.shape[0]
        output = torch.zeros_like(hidden)
        # (E, B, k) one-hot of the choices; one host sync to find the experts that were hit.
        expert_mask = F.one_hot(indices, self.num_experts).permute(2, 0, 1)
        hit = torch.nonzero(expert_mask.sum(dim=(1, 2))).flatten().tolist()
        for expert in hit:
            rows, slots = torch.where(expert_mask[expert])
            scale = weights[rows, slots].to(hidden.dtype)[:, None, None]
            if rows.numel() == batch:
                # Every sample chose this expert (always so when dense): skip the gather/scatter copies.
                output.add_(scale * self.expert_forward(hidden, expert))
            else:
                selected = hidden.index_select(0, rows)
                output.index_add_(0, rows, scale * self.expert_forward(selected, expert))
        return output

    def extra_repr(self) -> str:
        return (
            f"num_experts={self.num_experts}, hidden_size={self.hidden_size}, "
            f"intermediate_size={self.intermediate_size}, expert_type={self.expert_type}"
        )


class MlpSiluExperts(ExpertBank):
    """`mlp_silu` (paper, Table 5): Linear C->I, SiLU, Linear I->C, with biases."""

    expert_type = "mlp_silu"
    fan_in_of_output_side = ("fc2_weight", "fc2_bias")

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int) -> None:
        super().__init__(num_experts, hidden_size, intermediate_size)
        self.fc1_weight = nn.Parameter(torch.empty(num_experts, intermediate_size, hidden_size))
        self.fc1_bias = nn.Parameter(torch.empty(num_experts, intermediate_size))
        self.fc2_weight = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))
        self.fc2_bias = nn.Parameter(torch.empty(num_experts, hidden_size))
        self.reset_parameters()

    def expert_forward(self, hidden: torch.Tensor, expert: int) -> torch.Tensor:
        inner = F.silu(F.linear(hidden, self.fc1_weight[expert], self.fc1_bias[expert]))
        return F.linear(inner, self.fc2_weight[expert], self.fc2_bias[expert])


class SwiGLUExperts(ExpertBank):
    """`swiglu` (the authors' code): down(silu(gate(x)) * up(x)), no biases."""

    expert_type = "swiglu"
    fan_in_of_output_side = ("down_proj",)

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int) -> None:
        super().__init__(num_experts, hidden_size, intermediate_size)
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * intermediate_size, hidden_size))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))
        self.reset_parameters()

    def expert_forward(self, hidden: torch.Tensor, expert: int) -> torch.Tensor:
        gate, up = F.linear(hidden, self.gate_up_proj[expert]).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_proj[expert])


EXPERT_TYPES = {cls.expert_type: cls for cls in (MlpSiluExperts, SwiGLUExperts)}


def make_experts(num_experts: int, hidden_size: int, intermediate_size: int, expert_type: str) -> ExpertBank:
    """The expert bank of `--moe_expert_type`; a ValueError naming the flag for an unknown type."""
    if expert_type not in EXPERT_TYPES:
        raise ValueError(f"--moe_expert_type {expert_type!r} is not supported; choose {' or '.join(EXPERT_TYPES)}")
    return EXPERT_TYPES[expert_type](num_experts, hidden_size, intermediate_size)
