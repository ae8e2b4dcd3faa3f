"""The translator against a real HTTP server on loopback: every fault ends as a retry or a named
reject, and no output row is ever corrupt."""

import json

import pytest
from translation_server import easyvqa_items, read_json, run_translate, write_items

from llava.data.translate.protect import MARKER

RETRIED = {"429": "HTTP 429", "500": "HTTP 500", "stall": "APITimeoutError", "drop": "APIConnectionError"}
REJECTED = {"wrong_language": "language", "drop_placeholder": "protected_spans", "preamble": "preamble",
            "garbage": "malformed_response"}
MCQ_TEXT = "What color is the shape?\n⟦0⟧"  # the lettered question: has markers to drop


@pytest.fixture
def items_file(tmp_path):
    path = tmp_path / "evqa.json"
    write_items(path, easyvqa_items(8))
    return path


def clean_outputs(server, items_file, out):
    assert run_translate(server, items_file, out) == 0
    return {lang: read_json(out / f"evqa_{lang}.json") for lang in ("zh", "pt")}


def assert_rows_intact(source_items, rows, lang):
    by_id = {item["id"]: item for item in source_items}
    for row in rows:
        source = by_id[row["id"]]
        assert row["lang"] == lang and row["image"] == source["image"]
        assert [t["from"] for t in row["conversations"]] == [t["from"] for t in source["conversations"]]
        for turn, original in zip(row["conversations"], source["conversations"]):
            assert not MARKER.search(turn["value"]) and "⟦" not in turn["value"]
            assert turn["value"].count("<image>") == original["value"].count("<image>")
            assert "Here is the translation" not in turn["value"]


@pytest.mark.parametrize("fault", sorted(RETRIED))
def test_transient_fault_is_retried_and_the_output_is_unchanged(fault, translation_server, items_file, tmp_path, capsys):
    expected = clean_outputs(translation_server, items_file, tmp_path / "clean")
    translation_server.requests.clear()
    translation_server.retry_after = 0
    translation_server.inject(fault, match=MCQ_TEXT, lang="zh", times=1)
    assert run_translate(translation_server, items_file, tmp_path / "faulty", "--timeout", "0.5") == 0
    hit = [r for r in translation_server.requests if r.fault == fault]
    assert len(hit) == 1
    again = [r for r in translation_server.requests if r.text == hit[0].text and r.lang == "zh"]
    assert len(again) == 2 and again[1].fault is None
    assert f"{RETRIED[fault]} x1" in capsys.readouterr().out
    for lang in ("zh", "pt"):
        assert read_json(tmp_path / "faulty" / f"evqa_{lang}.json") == expected[lang]


@pytest.mark.parametrize("fault", sorted(REJECTED))
def test_bad_answer_becomes_a_named_reject_and_never_an_output_row(fault, translation_server, items_file, tmp_path):
    translation_server.inject(fault, match=MCQ_TEXT, lang="zh", times=1)
    assert run_translate(translation_server, items_file, tmp_path) == 0
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert rejects and {r["reason"] for r in rejects} == {REJECTED[fault]}
    rejected_ids = {r["id"] for r in rejects}
    rows = read_json(tmp_path / "evqa_zh.json")
    assert not rejected_ids & {row["id"] for row in rows}
    assert len(rows) + len(rejected_ids) == 8
    assert_rows_intact(read_json(tmp_path / "evqa.json"), rows, "zh")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["zh"]["rejected"] == {REJECTED[fault]: len(rejected_ids)} and report["pt"]["rejected"] == {}


def test_retry_after_is_honoured(translation_server, items_file, tmp_path):
    translation_server.retry_after = 1
    translation_server.inject("429", match=MCQ_TEXT, lang="pt", times=1)
    assert run_translate(translation_server, items_file, tmp_path) == 0
    first = next(r for r in translation_server.requests if r.fault == "429")
    (second,) = [r for r in translation_server.requests if r.text == first.text and r.lang == "pt" and r is not first]
    assert second.fault is None and second.started - first.finished >= 1.0


def test_retry_rejects_sends_the_reject_again_with_a_stricter_prompt(translation_server, items_file, tmp_path):
    translation_server.inject("preamble", match=MCQ_TEXT, lang="pt", times=1)
    assert run_translate(translation_server, items_file, tmp_path) == 0
    assert (tmp_path / "rejects.jsonl").read_text()
    before = len(translation_server.requests)
    assert run_translate(translation_server, items_file, tmp_path, "--retry-rejects") == 0
    retried = translation_server.requests[before:]
    assert len(retried) == 1 and retried[0].strict and retried[0].text.startswith(MCQ_TEXT)
    assert (tmp_path / "rejects.jsonl").read_text() == ""
    assert len(read_json(tmp_path / "evqa_pt.json")) == 8


@pytest.mark.parametrize("fault", ["garbage", "preamble", "wrong_language"])
def test_a_server_answering_only_garbage_yields_rejects_and_valid_files(fault, translation_server, items_file, tmp_path):
    translation_server.inject(fault, lang="zh", times=None)
    assert run_translate(translation_server, items_file, tmp_path) == 0
    assert read_json(tmp_path / "evqa_zh.json") == []
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rejects if r["lang"] == "zh"} == {f"evqa{i}" for i in range(8)}
    assert len(read_json(tmp_path / "evqa_pt.json")) == 8


def test_identical_strings_are_requested_once(translation_server, items_file, tmp_path):
    assert run_translate(translation_server, items_file, tmp_path) == 0
    sent = [(r.lang, r.text) for r in translation_server.requests]
    assert len(sent) == len(set(sent))
    sources = {t["value"] for item in read_json(items_file) for t in item["conversations"]}
    assert len(set(sent)) < 2 * len(sources)  # shared answers such as "Yes" went out once per language


def test_budget_stops_the_run_and_a_rerun_finishes_it(translation_server, items_file, tmp_path, capsys):
    assert run_translate(translation_server, items_file, tmp_path, "--max-requests", "5") == 3
    out = capsys.readouterr().out
    assert "requests: 5 sent" in out and "of a budget of 5" in out and "tokens reported by the server: prompt" in out
    assert len(translation_server.requests) == 5
    assert run_translate(translation_server, items_file, tmp_path) == 0
    sent = [(r.lang, r.text) for r in translation_server.requests]
    assert len(sent) == len(set(sent))


def test_progress_bars_show_each_language_with_in_flight_and_rejects(translation_server, items_file, tmp_path, capsys):
    from translation_server import MODEL

    from llava.data.translate.cli import translate_main

    argv = [str(items_file), "--langs", "zh,pt", "--base-url", translation_server.base_url, "--model", MODEL,
            "--out", str(tmp_path)]
    assert translate_main(argv) == 0
    err = capsys.readouterr().err
    for lang in ("zh", "pt"):
        assert f"translate {lang}" in err
    assert "in flight" in err and "rejects 0" in err and "<00:00" in err


def test_a_reject_whose_strict_retry_failed_is_not_asked_or_journaled_again(translation_server, items_file, tmp_path):
    translation_server.inject("preamble", match=MCQ_TEXT, lang="pt", times=None)
    assert run_translate(translation_server, items_file, tmp_path, "--retry-rejects") == 0
    strict = [r for r in translation_server.requests if r.strict]
    assert strict and all(r.fault == "preamble" for r in strict)
    journal = (tmp_path / "journal.jsonl").read_text()
    before = len(translation_server.requests)
    assert run_translate(translation_server, items_file, tmp_path, "--retry-rejects") == 0
    assert len(translation_server.requests) == before and (tmp_path / "journal.jsonl").read_text() == journal
