"""`python -m llava.serve.cli`: streamed multi-turn chat, and clear exits for bad input."""

from __future__ import annotations

import pytest
import torch
from serve_helpers import png_bytes, thin_png, tiny_parrot_engine

from llava.serve import cli
from llava.serve.engine import SamplingParams

PARAMS = SamplingParams(max_new_tokens=6, temperature=1.0, top_p=1.0)


@pytest.fixture(scope="module")
def engine(tiny_assets):
    return tiny_parrot_engine(tiny_assets)


def scripted(*lines: str):
    """An `input` replacement that returns `lines` in turn, then signals end of input."""
    remaining = list(lines)

    def read(prompt: str) -> str:
        if not remaining:
            raise EOFError
        return remaining.pop(0)

    return read


def run_main(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


def test_bad_image_file_exits_2_naming_the_flag_before_any_model_is_loaded(tmp_path, capsys):
    (tmp_path / "notes.png").write_text("not a picture")
    code, err = run_main(capsys, "--model-path", str(tmp_path / "no-such-model"), "--image-file",
                         str(tmp_path / "notes.png"), "--query", "hi")
    assert code == 2 and f"--image-file {tmp_path / 'notes.png'} is not an image" in err


def test_empty_query_exits_2(tmp_path, capsys):
    code, err = run_main(capsys, "--model-path", str(tmp_path), "--query", "  ")
    assert code == 2 and "--query is empty" in err


def test_missing_checkpoint_exits_2_naming_the_flag(tmp_path, capsys):
    code, err = run_main(capsys, "--model-path", str(tmp_path / "absent"), "--query", "hi")
    assert code == 2 and "--model-path" in err and "not a directory" in err


def test_out_of_range_temperature_exits_2(tmp_path, capsys):
    code, err = run_main(capsys, "--model-path", str(tmp_path), "--temperature", "5")
    assert code == 2 and "temperature must be between 0 and 2" in err


def test_chat_keeps_the_history_of_earlier_turns(engine, capsys):
    torch.manual_seed(0)
    history = cli.chat_loop(engine, None, PARAMS, read=scripted("What colour?", "Are you sure?"))
    assert [user for user, _ in history] == ["What colour?", "Are you sure?"]
    assert capsys.readouterr().out.count("assistant: ") == 2


def test_clear_command_starts_a_new_conversation(engine, capsys):
    torch.manual_seed(0)
    history = cli.chat_loop(engine, None, PARAMS, read=scripted("hi", "/clear", "again"))
    assert [user for user, _ in history] == ["again"] and "(conversation cleared)" in capsys.readouterr().out


def test_empty_line_is_explained_and_the_chat_goes_on(engine, capsys):
    torch.manual_seed(0)
    history = cli.chat_loop(engine, None, PARAMS, read=scripted("", "word " * 5000, "hi"))
    out = capsys.readouterr().out
    assert "(the prompt is empty" in out and "reads at most 4096" in out and len(history) == 1


@pytest.fixture(scope="module")
def checkpoint(engine, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tiny-parrot"
    engine.model.save_pretrained(path)
    engine.tokenizer.save_pretrained(path)
    engine.image_processor.save_pretrained(path)
    return path


def test_image_too_thin_to_preprocess_exits_2_naming_the_flag(checkpoint, tmp_path, capsys):
    (tmp_path / "thin.png").write_bytes(thin_png(1, 100_000))
    code, err = run_main(capsys, "--model-path", str(checkpoint), "--image-file", str(tmp_path / "thin.png"),
                         "--query", "hi", "--device", "cpu")
    assert code == 2 and f"--image-file {tmp_path / 'thin.png'} is 1x100000 pixels" in err


def test_query_streams_an_answer_from_a_saved_checkpoint(checkpoint, tmp_path, capsys):
    (tmp_path / "red.png").write_bytes(png_bytes((32, 32)))
    torch.manual_seed(0)
    code = cli.main(["--model-path", str(checkpoint), "--image-file", str(tmp_path / "red.png"), "--query",
                     "这个图形是什么颜色？", "--temperature", "1.0", "--max-new-tokens", "6", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("assistant: ") and out.strip() != "assistant:"
