"""Bad commands fail before any translation request, naming the file or flag and the fix."""

import socket

import pytest
from translation_server import easyvqa_items, run_translate, write_items


@pytest.fixture
def items_file(tmp_path):
    path = tmp_path / "evqa.json"
    write_items(path, easyvqa_items(2))
    return path


def fails_before_any_request(server, capsys, input_path, out, *flags) -> str:
    assert run_translate(server, input_path, out, *flags) == 2
    assert server.requests == []
    return capsys.readouterr().err


def test_malformed_input_names_the_file(translation_server, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": 1, "conversations": [')
    err = fails_before_any_request(translation_server, capsys, broken, tmp_path / "out")
    assert str(broken) in err and "not valid JSON" in err and "pass a LLaVA .json list or .jsonl file" in err


def test_item_without_conversations_is_named_with_its_index(translation_server, tmp_path, capsys):
    path = tmp_path / "items.json"
    write_items(path, [*easyvqa_items(1), {"id": "x", "conversation": []}])
    err = fails_before_any_request(translation_server, capsys, path, tmp_path / "out")
    assert str(path) in err and "item 1: no 'conversations' list" in err


def test_unknown_language_is_named(translation_server, items_file, tmp_path, capsys):
    err = fails_before_any_request(translation_server, capsys, items_file, tmp_path / "out", "--langs", "zh,klingon")
    assert "unknown language code 'klingon'" in err and "ISO 639-1" in err


def test_unreachable_endpoint_is_named(translation_server, items_file, tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{closed_port}/v1"
    err = fails_before_any_request(translation_server, capsys, items_file, tmp_path / "out", "--base-url", url)
    assert f"--base-url {url}: unreachable" in err and "start the server or fix the URL" in err


def test_missing_key_names_the_variable(translation_server, items_file, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    err = fails_before_any_request(translation_server, capsys, items_file, tmp_path / "out")
    assert "no API key: set $OPENAI_API_KEY" in err and "--api-key-env" in err
    err = fails_before_any_request(translation_server, capsys, items_file, tmp_path / "out", "--api-key-env", "MY_KEY")
    assert "set $MY_KEY" in err


def test_refused_key_and_unknown_model_are_named(translation_server, items_file, tmp_path, capsys):
    err = fails_before_any_request(translation_server, capsys, items_file, tmp_path / "out", "--model", "gpt-nope")
    assert "--model gpt-nope" in err and "fake-translator" in err
    translation_server.api_key = "the-right-key"
    err = fails_before_any_request(translation_server, capsys, items_file, tmp_path / "out")
    assert "refused the key from $OPENAI_API_KEY (HTTP 401)" in err
