"""Make docs/feed-light.png and docs/feed-dark.png: the demo's page in headless chromium.

The data is the demo's: a model trained on the bundled samples, and the daemon's poll of the X API sandbox's
sample timeline. Needs Debian's chromium (/usr/bin/chromium) and the playwright package (no browser download).

    python docs/make_screenshots.py [--width 1280 --height 1000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from typer.testing import CliRunner

from service.cli import app
from service.config import load_settings
from service.sandbox import Sandbox
from service.web import serve_in_thread

DOCS = Path(__file__).resolve().parent
SAMPLES = DOCS.parent / "service" / "samples"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1000)
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, Sandbox() as sandbox:
        env = {"NIJIFEED_DATA_DIR": tmp, "NIJIFEED_X_API_BASE_URL": sandbox.url,
               "NIJIFEED_X_BEARER_TOKEN": "demo-user-token", "NIJIFEED_AUDIT_RATE": "0"}
        runner = CliRunner()
        for command in (["train", "--from-folders", str(SAMPLES / "train/not2d"), str(SAMPLES / "train/2d")],
                        ["poll"]):
            result = runner.invoke(app, command, env=env)
            assert result.exit_code == 0, result.output
        server = serve_in_thread(load_settings(data_dir=Path(tmp), x_api_base_url=sandbox.url), port=0)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                for scheme in ("light", "dark"):
                    page = browser.new_page(viewport={"width": options.width, "height": options.height},
                                            color_scheme=scheme)
                    page.goto(server.url + "/", wait_until="networkidle")
                    page.wait_for_function("[...document.images].every(i => i.complete)")
                    page.screenshot(path=str(DOCS / f"feed-{scheme}.png"))
                    page.close()
                browser.close()
        finally:
            server.stop()
    print(f"wrote {DOCS / 'feed-light.png'} and {DOCS / 'feed-dark.png'}")


if __name__ == "__main__":
    main()
