"""The timeline page in a real headless browser (Debian's chromium driven by Playwright, no browser download):
served on 127.0.0.1 from a store filled by a real poll of the X API sandbox, every entry's images load, infinite
scroll reaches the last post, the CSP reports no violation, and the dark scheme applies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from feedkit import settings

from service.feed import feed_entries
from service.store import Store
from service.web import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Collects CSP violations from the first moment of every document (init scripts are not subject to the CSP).
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
    (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip("headless browser test skipped: /usr/bin/chromium is not installed "
                    "(Debian: apt-get install -y chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="headless browser test skipped: the playwright "
                                   "package is not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def test_page_shows_every_entry_with_its_images_in_chromium(browser, polled):
    with Store.open(polled / "nijifeed.sqlite3") as store:
        expected = feed_entries(store, limit=1000)
    server = serve_in_thread(settings(web_page_size=4), port=0)
    try:
        page = browser.new_page(viewport={"width": 390, "height": 844}, color_scheme="light")
        page.add_init_script(WATCH_CSP)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(server.url + "/", wait_until="load")
        # Infinite scroll: keep going to the bottom until the pager is gone and every entry is on the page.
        for _ in range(3 * len(expected)):
            page.mouse.wheel(0, 20000)
            page.wait_for_timeout(100)
            if page.locator("nav.pager").count() == 0:
                break
        articles = page.locator("#feed > article.post")
        assert articles.count() == len(expected)
        ids = page.eval_on_selector_all("#feed > article.post", "els => els.map(e => e.id.slice(5))")
        assert ids == [e.id for e in expected]
        # Every image (lazy ones included) loads: scroll each into view and wait for it.
        images = page.locator("#feed img")
        assert images.count() == sum(len(e.images) for e in expected) + len(expected)  # feed images + avatars
        for i in range(images.count()):
            images.nth(i).scroll_into_view_if_needed()
        page.wait_for_function("[...document.querySelectorAll('#feed img')].every(i => i.complete)", timeout=15000)
        widths = page.eval_on_selector_all("#feed .images img", "els => els.map(e => e.naturalWidth)")
        assert widths and all(w > 0 for w in widths), widths
        avatars = page.eval_on_selector_all("#feed img.avatar", "els => els.map(e => e.naturalWidth)")
        assert all(w > 0 for w in avatars), avatars
        lazy = page.eval_on_selector_all("#feed .images img", "els => els.every(e => e.loading === 'lazy')")
        assert lazy
        assert page.evaluate("window.__csp") == [], "CSP violations"
        assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
        assert not problems, problems
        # The phone layout: one column, no horizontal scrolling.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        light = page.evaluate("getComputedStyle(document.body).backgroundColor")
        page.emulate_media(color_scheme="dark")
        dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert light != dark
        page.close()
    finally:
        server.stop()
