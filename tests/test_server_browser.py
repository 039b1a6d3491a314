"""The web page in a real browser: Debian's chromium driven by Playwright (``executable_path``).
Searching, switching pipelines, comparing two, opening a document; markup in documents renders
as text. Skips when chromium or playwright is absent. Saves a screenshot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from server_util import Server, build_index, start_server

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("CASCADE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
SCREENSHOT_DIR = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("browser")
    srv = start_server(build_index(root / "b.idx"), root / "log", pipelines=("bm25", "bm25_rm3", "rrf(bm25, bm25_rm3)"))
    yield srv
    srv.stop()


def test_page_searches_compares_opens_a_document_and_keeps_markup_as_text(server: Server) -> None:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(server.url + "/")
            page.wait_for_selector("#pick-a option:nth-child(3)", state="attached")
            page.fill("#q", "bold solar")
            page.click("button[type=submit]")
            page.wait_for_selector("#col-a ol.hits li")
            assert page.locator("#col-a h3").inner_text() == "bm25"
            assert page.locator("#col-a ol.hits li mark").count() > 0  # highlighted query terms
            assert page.locator("#col-a .bar").count() >= 1  # per-stage timing bars
            page.select_option("#pick-a", "bm25_rm3")  # switching pipelines
            page.click("button[type=submit]")
            sync_api.expect(page.locator("#col-a h3")).to_have_text("bm25_rm3")
            page.select_option("#pick-a", "bm25")
            page.check("#compare")
            page.select_option("#pick-b", "rrf(bm25, bm25_rm3)")
            page.click("button[type=submit]")
            page.wait_for_selector("#col-b ol.hits li")
            assert "also in the other list" in page.locator("#col-a .overlap").inner_text()
            assert page.locator("#col-a li.shared").count() > 0
            evil = page.locator("#col-a button.hit-title[data-id=evil]")
            assert evil.inner_text() == "<script>window.pwned=1</script>"
            snippet = page.locator("#col-a li[data-id=evil] .snippet").inner_text()
            assert '<img src=x onerror="window.pwned=2">' in snippet
            evil.click()
            page.wait_for_selector("#doc:not([hidden])")
            assert page.locator("#doc-title").inner_text() == "<script>window.pwned=1</script>"
            assert "<b>bold</b>" in page.locator("#doc-text").inner_text()
            assert page.evaluate("window.pwned") is None and not dialogs
            assert page.locator("img, b, script:not([src])").count() == 0  # nothing from the index became markup
            SCREENSHOT_DIR.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT_DIR / "server-page.png"), full_page=True)
            page.click("#doc-close")
            page.fill("#where", 'lang = "en"')
            page.uncheck("#compare")
            page.click("button[type=submit]")
            sync_api.expect(page.locator("#col-a h3")).to_have_text("bm25")
            assert page.locator("#col-b").is_hidden()
        finally:
            browser.close()
    assert (SCREENSHOT_DIR / "server-page.png").stat().st_size > 10_000
