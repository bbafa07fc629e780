"""The Gradio page in headless Chromium: upload an image, send a message, see the streamed reply."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def test_upload_send_and_see_reply(make_tiny_model, tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    from mmgpt.infer.session import ChatSession

    real_generate = ChatSession._generate

    def generate(self, new_round, logits, options):
        if new_round.turn.user != "Write slowly.":
            yield from real_generate(self, new_round, logits, options)
            return
        for word in ["a ", "very ", "slow "] * 100:  # a reply still being written when Clear is pressed
            time.sleep(0.1)
            yield word

    monkeypatch.setattr(ChatSession, "_generate", generate)

    from mmgpt.serve.web import build_app, example_images, launch
    from tests.serve.conftest import free_port

    model = make_tiny_model(gate_init=1.0)
    app = build_app(model)
    port = free_port()
    # launched as `mmgpt web` launches it, with the installed Gradio's keyword arguments
    thread = threading.Thread(
        target=lambda: launch(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True),
        daemon=True,
    )
    thread.start()
    thread.join(timeout=60)
    image = example_images(tmp_path)[0]
    profile = tempfile.mkdtemp(prefix="mmgpt-chromium-")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}", timeout=60_000)
            page.locator("#image input[type=file]").set_input_files(image)
            page.wait_for_timeout(500)
            page.locator("#message textarea").fill("What shapes are in the picture?")
            page.locator("#send").click()
            deadline = time.time() + 60
            bot_text = ""
            while time.time() < deadline:
                bubbles = page.locator("#chat .bot, #chat [data-testid='bot']")
                if bubbles.count() and (bot_text := bubbles.last.inner_text().strip()):
                    break
                page.wait_for_timeout(200)
            page.screenshot(path=str(tmp_path / "page.png"))
            assert "What shapes are in the picture?" in page.locator("#chat").inner_text()
            assert bot_text, "no reply appeared on the page"
            # a message the context cannot hold is explained on the page, and the conversation goes on
            page.locator("#message textarea").fill("hello there, a small star, " * 300)
            page.locator("#send").click()
            page.get_by_text("the message needs").first.wait_for(timeout=30_000)
            # Clear during a reply empties the chat for good
            page.locator("#message textarea").fill("Write slowly.")
            page.locator("#send").click()
            page.get_by_text("very slow").first.wait_for(timeout=30_000)
            page.locator("#clear").click()
            page.wait_for_timeout(2000)
            assert "Write slowly." not in page.locator("#chat").inner_text()
            browser.close()
    finally:
        app.close()
        shutil.rmtree(profile, ignore_errors=True)
