"""Resuming: a SIGKILLed run finishes without asking again for finished units; <image> stays put."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from translation_server import MODEL, easyvqa_items, read_json, run_translate, write_items

from llava.data.translate.engine import cache_key
from llava.data.translate.journal import Journal
from playground.easyvqa.translations import load_table


def journal_records(path):
    """Complete lines only: what follows the last newline may be a line still being written."""
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


@pytest.mark.slow
def test_sigkill_halfway_then_rerun_equals_an_uninterrupted_run(translation_server, tmp_path):
    source = tmp_path / "evqa.json"
    items = easyvqa_items(30, seed=1)
    write_items(source, items)
    assert run_translate(translation_server, source, tmp_path / "reference") == 0
    translation_server.requests.clear()
    translation_server.latency = 0.05

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "llava.data.translate", str(source), "--langs", "zh,pt", "--base-url",
               translation_server.base_url, "--model", MODEL, "--out", str(killed), "--concurrency", "2",
               "--no-progress"]
    process = subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    units = 2 * sum(len(item["conversations"]) for item in items)
    deadline = time.monotonic() + 120
    while not (killed / "journal.jsonl").exists() or len(journal_records(killed / "journal.jsonl")) < units // 2:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()

    finished = journal_records(killed / "journal.jsonl")
    assert units // 2 <= len(finished) < units
    finished_keys = {key for record in finished for key in record["cache"]}
    before_rerun = len(translation_server.requests)
    assert run_translate(translation_server, source, killed, "--concurrency", "2") == 0

    rerun_keys = {cache_key(r.lang, r.text, None) for r in translation_server.requests[before_rerun:]}
    assert rerun_keys and not rerun_keys & finished_keys
    for name in ("evqa_zh.json", "evqa_pt.json", "rejects.jsonl"):
        assert (killed / name).read_text() == (tmp_path / "reference" / name).read_text()
    unit_keys = [tuple(r["unit"]) for r in journal_records(killed / "journal.jsonl")]
    assert len(unit_keys) == len(set(unit_keys)) == units


def test_a_torn_last_journal_line_is_dropped_and_appends_start_a_new_line(tmp_path):
    path = tmp_path / "journal.jsonl"
    good = {"kind": "unit", "unit": [0, 0, "zh"], "src": "s", "status": "ok", "value": "v", "cache": {}}
    path.write_text(json.dumps(good) + "\n" + '{"kind": "unit", "unit": [0, 1, "z')
    with Journal(path) as journal:
        assert list(journal.units) == [(0, 0, "zh")]
        journal.append({**good, "unit": [0, 1, "zh"]})
    assert [r["unit"] for r in journal_records(path)] == [[0, 0, "zh"], [0, 1, "zh"]]


def test_image_marker_stays_exactly_where_it_was(translation_server, tmp_path):
    table = load_table()
    question = table.question(table.template("color_what_generic"), "en")
    shape_question = table.question(table.template("shape_in_image"), "en")
    layouts = {
        "start": "<image>\n{q}",
        "end": "{q}\n<image>",
        "middle": "{q} <image> {s}",
        "twice": "<image>\n{q}\n<image>\n{s}",
    }
    items = [{"id": name, "image": ["a.png", "b.png"], "conversations": [
        {"from": "human", "value": layout.format(q=question, s=shape_question)}, {"from": "gpt", "value": "Yes"}]}
        for name, layout in layouts.items()]
    write_items(tmp_path / "layouts.json", items)
    assert run_translate(translation_server, tmp_path / "layouts.json", tmp_path / "out") == 0
    for lang in ("zh", "pt"):
        rows = {row["id"]: row for row in read_json(tmp_path / "out" / f"layouts_{lang}.json")}
        q = table.question(table.template("color_what_generic"), lang)
        s = table.question(table.template("shape_in_image"), lang)
        for name, layout in layouts.items():
            assert rows[name]["conversations"][0]["value"] == layout.format(q=q, s=s)
    assert not any("<image>" in r.text for r in translation_server.requests)


def test_an_output_write_that_fails_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    from llava.data import files

    target = tmp_path / "evqa_zh.json"
    files.write_atomically(target, "old")

    def crash(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        files.write_atomically(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["evqa_zh.json"]
