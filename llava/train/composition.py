"""Send the data composition (items per source and language) to wandb when the run starts."""

from __future__ import annotations

from transformers import TrainerCallback

from llava.data.mixture import CompositionRow
from llava.optional import require_wandb


class CompositionToWandb(TrainerCallback):
    """Logs `data/composition` as a wandb Table and totals per language in the run config.

    Runs after transformers' WandbCallback (reporting callbacks come first), so the run exists."""

    def __init__(self, composition: list[CompositionRow]):
        self.composition = composition

    def on_train_begin(self, args, state, control, **kwargs):
        wandb = require_wandb()
        if not state.is_world_process_zero or wandb.run is None:
            return
        rows = [[row.source, row.sampling, row.available, lang, count]
                for row in self.composition for lang, count in sorted(row.langs.items())]
        table = wandb.Table(columns=["source", "sampling", "available", "lang", "items"], data=rows)
        totals: dict[str, int] = {}
        for _, _, _, lang, count in rows:
            totals[lang] = totals.get(lang, 0) + count
        wandb.run.log({"data/composition": table}, commit=False)
        wandb.run.config.update({"data_items_per_lang": totals}, allow_val_change=True)
