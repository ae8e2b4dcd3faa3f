"""Per-language routing statistics during training: `routing/<lang>/expert_<i>` and
`routing/<lang>/entropy` in the trainer logs (and wandb), averaged over the images seen between two
log steps. The trainer feeds it the `routing` metric of each training forward."""

from __future__ import annotations

from collections import defaultdict

import torch

from llava.model.multimodal_projector import ROUTING_METRIC
from llava.train.projector_metrics import ProjectorMetricsCallback


class RoutingLogCallback(ProjectorMetricsCallback):
    """Mean routing probability of each expert and mean routing entropy, per prompt language."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.entropy: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def on_projector_metrics(self, metrics: dict[str, torch.Tensor], langs: list[str | None]) -> None:
        weights = metrics.get(ROUTING_METRIC)
        if weights is None:
            return
        weights = weights.detach().float().cpu()
        entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1)
        for row, ent, lang in zip(weights, entropy.tolist(), langs):
            key = lang or "unknown"
            self.sums[key] = self.sums.get(key, torch.zeros_like(row)) + row
            self.entropy[key] += ent
            self.counts[key] += 1

    def pop_logs(self) -> dict[str, float]:
        logs: dict[str, float] = {}
        for lang, total in sorted(self.sums.items()):
            n = self.counts[lang]
            for expert, value in enumerate((total / n).tolist()):
                logs[f"routing/{lang}/expert_{expert}"] = round(value, 4)
            logs[f"routing/{lang}/entropy"] = round(self.entropy[lang] / n, 4)
        self._reset()
        return logs
