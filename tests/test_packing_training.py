"""`--packing True` through the training entry point: one process and two (torchrun, gloo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from distributed_utils import run_torchrun, train_flags

from llava.train.train import train


def fractions(trainer) -> list[float]:
    return [log["real_token_fraction"] for log in trainer.state.log_history if "real_token_fraction" in log]


def mixed_length_data(tiny_data, path: Path) -> dict:
    """Short one-turn items beside conversations of eight turns, as in LLaVA's instruction mix."""
    items = []
    for i in range(16):
        turns = 8 if i % 4 == 0 else 1
        conversation = [{"from": "human", "value": "<image>\nWhat colour is it?"}, {"from": "gpt", "value": "Red."}]
        conversation += [{"from": "human", "value": "And now?"}, {"from": "gpt", "value": "Still red."}] * (turns - 1)
        items.append({"id": f"mix{i}", "image": f"{i}.png", "lang": "en", "conversations": conversation})
    path.write_text(json.dumps(items))
    return {**tiny_data, "instructions": path}


@pytest.mark.slow
def test_packed_training_logs_a_higher_real_token_fraction_than_unpacked(tiny_assets, tiny_data, tmp_path):
    data = mixed_length_data(tiny_data, tmp_path / "mixed.json")
    extra = ["--max_steps", "2", "--save_strategy", "no", "--per_device_train_batch_size", "4"]
    unpacked = train(train_flags(tiny_assets, data, tmp_path / "unpacked", stage=2, llm="llama", extra=extra))
    packed = train(train_flags(tiny_assets, data, tmp_path / "packed", stage=2, llm="llama",
                               extra=[*extra, "--packing", "True", "--model_max_length", "256"]))
    assert len(fractions(unpacked)) == len(fractions(packed)) == 2
    assert 0 < min(fractions(unpacked)) and max(fractions(packed)) <= 1
    assert min(fractions(packed)) > max(fractions(unpacked))


@pytest.mark.slow
@pytest.mark.parametrize("grouping", ["random", "group_by_modality_length"])
def test_every_sample_is_trained_exactly_once_per_epoch_on_two_processes(tiny_assets, tiny_data, tmp_path, grouping):
    items = [item["id"] for item in json.loads(Path(tiny_data["instructions"]).read_text())]
    extra = ["--packing", "True", "--model_max_length", "128", "--num_train_epochs", "1", "--save_strategy", "no"]
    if grouping == "group_by_modality_length":
        extra += ["--group_by_modality_length", "True"]
    record = tmp_path / "rows"
    flags = train_flags(tiny_assets, tiny_data, tmp_path / "out", stage=2, llm="llama", extra=extra)
    status = run_torchrun(flags, tmp_path / "log.txt", PARROT_TEST_RECORD_ROWS=str(record))
    assert status == 0, (tmp_path / "log.txt").read_text()[-4000:]
    rows = {rank: [json.loads(line) for line in Path(f"{record}.rank{rank}").read_text().splitlines()] for rank in (0, 1)}
    trained = [item for rank in (0, 1) for row in rows[rank] for item in row]
    assert sorted(trained) == sorted(items)  # every item once: none repeated, none dropped
    assert len(rows[0]) == len(rows[1]) and any(len(row) > 1 for row in rows[0] + rows[1])
    if grouping == "group_by_modality_length":
        assert all(len(row) == 1 for rank in (0, 1) for row in rows[rank] if "text0" in row)
