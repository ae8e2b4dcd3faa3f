"""The gradio demo's handlers and options, called directly (the browser test drives the page)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from serve_helpers import engine_with, mlp_model_like, png_bytes, png_claiming, thin_png, tiny_parrot_engine

from llava.eval.languages import LANGUAGE_NAMES
from llava.serve.engine import SamplingParams
from playground.demo import handlers
from playground.demo.app import parse_args, resolve_model_path
from playground.demo.ui import build_demo, example_prompts

PARAMS = SamplingParams(max_new_tokens=8, temperature=1.0, top_p=1.0)


@pytest.fixture(scope="module")
def engine(tiny_assets):
    return tiny_parrot_engine(tiny_assets)


@pytest.fixture()
def image_file(tmp_path):
    path = tmp_path / "red.png"
    path.write_bytes(png_bytes((48, 40)))
    return str(path)


def write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def chat_once(engine, message: str, image=None, turns=(), chatbot=()):
    torch.manual_seed(0)
    return list(handlers.chat(engine, message, image, list(turns), list(chatbot), PARAMS))


def test_valid_upload_shows_the_image_and_starts_a_new_chat(engine, image_file):
    update = handlers.upload(engine, image_file)
    assert update.image.size == (48, 40) and update.preview is update.image
    assert update.status.startswith("Image ready: red.png (48x40)") and update.chatbot == [] and update.turns == []


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("notes.txt", b"just some text, not a picture", "notes.txt is not an image Pillow can read"),
        ("broken.png", png_bytes((64, 64))[:-30], "broken.png is corrupt or truncated"),
        ("bomb.png", png_claiming(40_000, 40_000), "bomb.png is refused by Pillow's decompression-bomb guard"),
        ("empty.png", b"", "empty.png is empty"),
        ("thin.png", thin_png(1, 100_000), "thin.png is 1x100000 pixels, 100,000 times longer than wide"),
    ],
)
def test_bad_upload_is_refused_with_a_reason_and_no_image_is_kept(engine, tmp_path, name, data, reason):
    update = handlers.upload(engine, write(tmp_path, name, data))
    assert update.image is None and reason in update.status


def test_image_over_the_configured_pixel_limit_is_refused(engine, tmp_path):
    small_limit = engine_with(engine)
    small_limit.max_image_pixels = 1_000
    update = handlers.upload(small_limit, write(tmp_path, "big.png", png_bytes((100, 100))))
    assert update.image is None and "over the limit of 1,000" in update.status


def test_upload_after_a_refused_upload_works(engine, tmp_path, image_file):
    handlers.upload(engine, write(tmp_path, "junk.png", b"junk"))
    assert handlers.upload(engine, image_file).image is not None


def test_empty_prompt_leaves_the_chat_as_it_was_and_says_why(engine):
    chatbot = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    (update,) = chat_once(engine, "   ", turns=[("hi", "hello")], chatbot=chatbot)
    assert update.chatbot == chatbot and update.turns == [("hi", "hello")]
    assert "the prompt is empty" in update.status


def test_prompt_over_the_context_is_refused_and_kept_in_the_box(engine):
    long_prompt = "word " * 5000
    (update,) = chat_once(engine, long_prompt)
    assert "reads at most 4096" in update.status and update.message_box == long_prompt and update.chatbot == []


def test_answer_streams_in_growing_pieces(engine):
    updates = chat_once(engine, "这个图形是什么颜色？", image=Image.new("RGB", (32, 32), (200, 30, 30)))
    answers = [u.chatbot[-1]["content"] for u in updates if u.chatbot]
    assert len(set(answers)) > 2 and all(a.startswith(b) for a, b in zip(answers[1:], answers))
    assert updates[-1].status.startswith("Done: 8 tokens")


def test_routing_chart_shows_one_bar_per_expert_for_the_prompt(engine):
    updates = chat_once(engine, "这个图形是什么颜色？", image=Image.new("RGB", (32, 32), (200, 30, 30)))
    table = updates[-1].routing_table
    assert list(table["expert"]) == [f"E{i}" for i in range(6)]
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-5)
    assert "Chinese detected" in updates[-1].routing_note


def test_second_turn_is_answered_with_the_first_in_the_history(engine):
    image = Image.new("RGB", (32, 32), (30, 30, 200))
    first = chat_once(engine, "What colour?", image=image)[-1]
    second = chat_once(engine, "Are you sure?", image=image, turns=first.turns, chatbot=first.chatbot)[-1]
    assert [u for u, _ in second.turns] == ["What colour?", "Are you sure?"] and len(second.chatbot) == 4


def test_regenerate_replaces_the_last_answer(engine):
    first = chat_once(engine, "What colour?")[-1]
    torch.manual_seed(1)
    again = list(handlers.regenerate(engine, None, first.turns, first.chatbot, PARAMS))[-1]
    assert len(again.chatbot) == 2 and [u for u, _ in again.turns] == ["What colour?"]
    assert again.chatbot[-1]["content"] != first.chatbot[-1]["content"]


def test_regenerate_without_a_question_says_there_is_nothing_to_redo(engine):
    (update,) = handlers.regenerate(engine, None, [], [], PARAMS)
    assert update.status.startswith("Nothing to regenerate")


def test_clear_forgets_the_image_and_the_conversation(engine):
    update = handlers.clear(engine)
    assert (update.image, update.chatbot, update.turns, len(update.routing_table)) == (None, [], [], 0)


def test_non_parrot_model_hides_the_chart_and_says_why(engine):
    plain = engine_with(engine, model=mlp_model_like(engine), name="tiny-mlp")
    demo = build_demo(plain)
    charts = [b for b in demo.blocks.values() if type(b).__name__ == "BarPlot"]
    notes = [getattr(b, "value", "") or "" for b in demo.blocks.values()]
    assert [c.visible for c in charts] == [False]
    assert any("`mlp2x_gelu` projector, which has no experts" in str(n) for n in notes)


def test_example_prompts_cover_all_six_languages():
    assert {name for name, _ in example_prompts()} == set(LANGUAGE_NAMES.values())


def test_demo_without_a_checkpoint_says_how_to_make_one(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        resolve_model_path(None, default=tmp_path / "quickstart" / "checkpoint")
    assert "bash scripts/quickstart.sh" in str(exit_info.value) and "--model-path" in str(exit_info.value)


def test_demo_serves_the_quickstart_checkpoint_by_default(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_path(None, default=tmp_path) == str(tmp_path)


def test_demo_binds_loopback_without_a_share_link_and_queues_one_at_a_time():
    args = parse_args([])
    assert (args.host, args.share, args.concurrency_limit) == ("127.0.0.1", False, 1)
