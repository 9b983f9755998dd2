"""The trained data dir set up to poll an X API sandbox (``service_env``) or after one poll of it (``queued_dir``),
and checks on what a poll leaves in the store.

A pytest plugin (listed in ``conftest.pytest_plugins``): its fixtures need no import. Import the helper functions
(``use``, ``db``, ``shown_keys``, ``assert_routed_exactly_once``) as usual.
"""

from __future__ import annotations

import sqlite3

import pytest
from xsandbox import BEARER_TOKEN

from service.sandbox import Sandbox


@pytest.fixture
def service_env(trained, monkeypatch, no_proxy):
    """The trained data dir, pointed at whatever sandbox the test starts (set NIJIFEED_X_API_BASE_URL)."""
    monkeypatch.setenv("NIJIFEED_X_BEARER_TOKEN", BEARER_TOKEN)
    monkeypatch.setenv("NIJIFEED_X_MAX_RESULTS", "5")
    monkeypatch.setenv("NIJIFEED_X_MAX_PAGES", "20")
    monkeypatch.setenv("NIJIFEED_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("NIJIFEED_X_BACKOFF", "0.01")
    monkeypatch.setenv("NIJIFEED_AUDIT_RATE", "0")
    return trained


@pytest.fixture
def queued_dir(service_env, sandbox, cli, monkeypatch):
    """The trained data dir (model v1) after a real poll of this test's sandbox, with a review queue (20 % audits)."""
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_AUDIT_RATE", "0.2")
    cli("poll")
    return service_env


def use(monkeypatch, sandbox: Sandbox) -> None:
    monkeypatch.setenv("NIJIFEED_X_API_BASE_URL", sandbox.url)


def db(data_dir) -> sqlite3.Connection:
    conn = sqlite3.connect(data_dir / "nijifeed.sqlite3")
    conn.row_factory = sqlite3.Row
    return conn


def shown_keys(sandbox: Sandbox) -> set[str]:
    return {m["media_key"] for post in sandbox.posts() for m in post["shown"]}


def assert_routed_exactly_once(conn: sqlite3.Connection) -> None:
    """Every image has one verdict and one route, and every media row showing it mirrors that route."""
    per_image = conn.execute("SELECT image_id, count(*) AS n FROM verdicts GROUP BY image_id").fetchall()
    assert per_image and all(row["n"] == 1 for row in per_image)
    unrouted = conn.execute(
        "SELECT count(*) FROM images WHERE route IS NULL AND id IN (SELECT image_id FROM media)"
    ).fetchone()[0]
    assert unrouted == 0
    mismatched = conn.execute(
        "SELECT count(*) FROM media JOIN images ON images.id = media.image_id WHERE media.status != images.route"
    ).fetchone()[0]
    assert mismatched == 0
    queued = conn.execute("SELECT count(*) FROM review_queue").fetchone()[0]
    in_review = conn.execute("SELECT count(*) FROM images WHERE route = 'review'").fetchone()[0]
    audits = conn.execute("SELECT count(*) FROM verdicts WHERE audit = 1").fetchone()[0]
    assert queued == in_review + audits
