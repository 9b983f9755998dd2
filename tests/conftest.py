"""Shared fixtures: the bundled samples, an isolated data dir, and the CLI run in-process."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

#: Shared fixtures, registered once for every test module (no module imports a fixture). Each plugin's helper
#: functions and constants are imported as usual (``from xsandbox import make_source``).
pytest_plugins = [
    "xsandbox",  # the X API sandbox: ``no_proxy``, ``sandbox`` (one per test), ``http``
    "pipelinekit",  # ``service_env``: the trained data dir set to poll the test's sandbox; ``queued_dir``: polled
    "feedkit",  # ``feed_sandbox`` (one per session), ``polled_template``, ``polled``: a store one poll filled
    "reviewkit",  # ``world``: a store in the state a poll leaves it, with a review queue
]

SAMPLES = Path(__file__).resolve().parent.parent / "service" / "samples"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test reads the developer's own settings or data dir."""
    for name in list(__import__("os").environ):
        if name.startswith("NIJIFEED_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps tables at the terminal width; keep rows on one line
    # The CLI quiets chatty library loggers; undo that after each test so log assertions see them again.
    for name in ("httpx", "httpcore", "apscheduler", "tweepy"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def cli():
    from service.cli import app

    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


@pytest.fixture(scope="session")
def trained_data_dir(tmp_path_factory) -> Path:
    """A data dir with a model trained once on the bundled samples (training is the slow part)."""
    from typer.testing import CliRunner

    from service.cli import app

    data_dir = tmp_path_factory.mktemp("trained")
    env = {"NIJIFEED_DATA_DIR": str(data_dir)}
    result = CliRunner().invoke(
        app, ["train", "--from-folders", str(SAMPLES / "train/not2d"), str(SAMPLES / "train/2d")], env=env
    )
    assert result.exit_code == 0, result.output
    return data_dir


@pytest.fixture
def trained(trained_data_dir, tmp_path, monkeypatch) -> Path:
    """A private copy of the trained data dir, active in the environment."""
    copy = tmp_path / "trained"
    shutil.copytree(trained_data_dir, copy)
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(copy))
    return copy
