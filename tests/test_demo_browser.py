"""The gradio demo in a real headless browser: Debian's chromium driven by playwright.

Needs `/usr/bin/chromium` (`apt-get install -y chromium`) and the `playwright` pip package; the
browser bundled by `playwright install` is never used. The demo runs in this process on
127.0.0.1 with a tiny untrained Parrot model. A screenshot of the finished chat is written to
`$PARROT_ARTIFACTS` (default `outputs/test-artifacts/`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from serve_helpers import free_port, png_bytes, tiny_parrot_engine

from playground.demo.app import parse_args, start_demo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHINESE_QUESTION = "这个图形是什么颜色？"
RECORD_BOT_TEXT = """() => {
    window.botTexts = [];
    const chat = document.querySelector('#chat');
    new MutationObserver(() => {
        const bots = chat.querySelectorAll('[data-testid="bot"]');
        if (bots.length) window.botTexts.push(bots[bots.length - 1].innerText);
    }).observe(chat, {subtree: true, childList: true, characterData: true});
}"""


def artifacts_dir() -> Path:
    root = Path(__file__).resolve().parents[1]
    path = Path(os.environ.get("PARROT_ARTIFACTS") or root / "outputs" / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def demo_url(tiny_assets):
    engine = tiny_parrot_engine(tiny_assets)
    port = free_port()
    args = parse_args(["--port", str(port), "--temperature", "1.0", "--max-new-tokens", "32"])
    demo = start_demo(engine, args, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, demo_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(demo_url)
    yield page
    page.close()


def upload(page, path: Path) -> None:
    page.locator("#image-upload input[type=file]").set_input_files(str(path))


def test_chinese_question_about_an_image_streams_an_answer_and_charts_the_experts(page, tmp_path):
    image = tmp_path / "red.png"
    image.write_bytes(png_bytes((64, 64)))
    upload(page, image)
    page.wait_for_function("document.querySelector('#status').innerText.includes('Image ready')", timeout=30_000)

    page.evaluate(RECORD_BOT_TEXT)
    page.fill("#message textarea", CHINESE_QUESTION)
    page.click("#send")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Done')", timeout=90_000)
    page.wait_for_function(
        "document.querySelectorAll('#routing-chart .mark-rect path').length === 6", timeout=30_000
    )
    page.screenshot(path=str(artifacts_dir() / "demo_chat_and_routing.png"), full_page=True)

    seen = [text.strip() for text in page.evaluate("window.botTexts") if text.strip()]
    final = page.locator('#chat [data-testid="bot"]').last.inner_text().strip()
    assert page.locator('#chat [data-testid="user"]').last.inner_text().strip() == CHINESE_QUESTION
    assert final and len(set(seen)) >= 2, f"the answer did not arrive in pieces: {seen}"
    assert "Chinese detected" in page.inner_text("#routing-note")


def test_non_image_upload_is_explained_on_the_page(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    upload(page, notes)
    page.wait_for_function("document.querySelector('#status').innerText.includes('not an image')", timeout=30_000)
    assert "notes.txt is not an image Pillow can read" in page.inner_text("#status")
