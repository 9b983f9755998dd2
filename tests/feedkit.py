"""Fixtures for the feed, web and forwarder tests: a store filled by one real poll of the X API sandbox with the
model trained on the bundled samples, made once per session and copied per test (a poll takes seconds).

A pytest plugin (listed in ``conftest.pytest_plugins``): its fixtures (``feed_sandbox``, ``polled_template``,
``polled``) need no import. Import the helper functions (``settings``, ``web_client``) as usual.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.config import Settings
from service.sandbox import Sandbox

BEARER = "user-feed-test-token"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(scope="session")
def feed_sandbox() -> Iterator[Sandbox]:
    """One sandbox for the session: the stored posts' media and avatar URLs point at it."""
    with Sandbox() as box:
        yield box


@pytest.fixture(scope="session")
def polled_template(trained_data_dir, feed_sandbox, tmp_path_factory) -> Path:
    """A trained data dir after one poll of the whole sandbox timeline (no audit sample, so the feed is exact)."""
    from service.cli import app

    data_dir = tmp_path_factory.mktemp("polled")
    shutil.copytree(trained_data_dir, data_dir, dirs_exist_ok=True)
    env: dict[str, str | None] = {**env_for(data_dir, feed_sandbox), **{name: None for name in PROXY_VARS}}
    result = CliRunner().invoke(app, ["poll"], env=env)
    assert result.exit_code == 0, result.output
    return data_dir


def env_for(data_dir: Path, sandbox: Sandbox) -> dict[str, str]:
    return {
        "NIJIFEED_DATA_DIR": str(data_dir),
        "NIJIFEED_X_API_BASE_URL": sandbox.url,
        "NIJIFEED_X_BEARER_TOKEN": BEARER,
        "NIJIFEED_AUDIT_RATE": "0",
        "NIJIFEED_HTTP_TIMEOUT": "3",
        "NIJIFEED_X_BACKOFF": "0.01",
        "NO_PROXY": "127.0.0.1,localhost",
    }


@pytest.fixture
def polled(polled_template, feed_sandbox, tmp_path, monkeypatch) -> Path:
    """A private copy of the polled data dir, active in the environment (for ``cli`` and ``settings``)."""
    copy = tmp_path / "polled"
    shutil.copytree(polled_template, copy)
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env_for(copy, feed_sandbox).items():
        monkeypatch.setenv(name, value)
    return copy


def settings(**overrides: object) -> Settings:
    """Settings from the environment (as the CLI reads them), with overrides."""
    from service.config import load_settings

    return load_settings(**overrides)


def web_client(**overrides: object):
    """A Starlette TestClient on the web face built from the environment's settings (use as a context manager, so
    the app's lifespan runs)."""
    from starlette.testclient import TestClient

    from service.web import create_app

    return TestClient(create_app(settings(**overrides)), base_url="http://127.0.0.1:8000")
