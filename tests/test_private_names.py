"""Every private transformers/accelerate name that llava/train/ overrides, calls or passes is listed,
with its reason, in docs/transformers_private_names.md, and every name listed there for llava/train/
is still used."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from transformers import PretrainedConfig, Trainer, TrainerCallback, TrainingArguments

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "transformers_private_names.md"
TRAIN = ROOT / "llava" / "train"
FOREIGN = (Trainer, TrainerCallback, TrainingArguments, Accelerator, AcceleratedOptimizer, PretrainedConfig)


def foreign_private_names() -> set[str]:
    names = {n for cls in FOREIGN for n in dir(cls) if n.startswith("_") and not n.startswith("__")}
    for cls in FOREIGN:
        for _, method in inspect.getmembers(cls, inspect.isfunction):
            names |= {p for p in inspect.signature(method).parameters if p.startswith("_")}
    return names


def defined_in_llava() -> set[str]:
    """Private names llava/ defines itself (functions, classes, module names, attributes it assigns)."""
    names: set[str] = set()
    for path in (ROOT / "llava").rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            names |= set(re.findall(r"\b(?:def|class)\s+(_\w+)", line))
            names |= set(re.findall(r"^(_\w+)\s*[:=]", line))
            if re.search(r"[^=!<>]=[^=]", line):
                names |= set(re.findall(r"\bself\.(_\w+)", line.split("=")[0]))
    return names - foreign_private_names()


def used_private_names(source: str) -> set[str]:
    """`def _x`, `._x` and `_x=` (a private keyword) of other libraries, found in `source`."""
    found = set(re.findall(r"\bdef\s+(_[a-z]\w*)", source))
    found |= set(re.findall(r"\.(_[a-z]\w*)", source))
    found |= set(re.findall(r"\b(_[a-z]\w*)\s*=(?!=)", source)) & foreign_private_names()
    found |= set(re.findall(r"\b(_[a-z]\w*)\b", source)) & foreign_private_names()
    return {n for n in found if not n.startswith("__")} - defined_in_llava()


def documented_train_names() -> set[str]:
    names = set()
    for row in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) == 3 and "llava/train/" in cells[1]:
            names |= set(re.findall(r"`(_\w+)`", cells[0]))
    return names


def test_doc_names_the_transformers_version_it_was_checked_on():
    assert "transformers 5.25.0" in DOC.read_text(encoding="utf-8")


def test_every_private_name_in_llava_train_is_documented_and_every_documented_one_used():
    used = set().union(*(used_private_names(p.read_text(encoding="utf-8")) for p in TRAIN.glob("*.py")))
    documented = documented_train_names()
    assert used - documented == set(), f"private names used in llava/train/ but not in {DOC.name}"
    assert documented - used == set(), f"listed in {DOC.name} for llava/train/ but no longer used there"


def test_the_scan_finds_an_override_a_call_a_flag_and_a_keyword():
    source = (
        "class T(Trainer):\n"
        "    def _get_grad_norm(self, model):\n"
        "        self.optimizer._is_overflow = True\n"
        "        super()._maybe_log_save_evaluate()\n"
        "        self.save_model(d, _internal_call=True)\n"
    )
    assert used_private_names(source) == {"_get_grad_norm", "_is_overflow", "_maybe_log_save_evaluate", "_internal_call"}
    assert used_private_names("self._aux_loss_sum += 1\nself._log('x')\n") == set()
