"""One error root: user errors become one line, anything else keeps its traceback."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from service.classify.registry import ModelError
from service.cli.base import command
from service.config import ConfigError
from service.daemon import AlreadyRunning
from service.errors import InputError, NijifeedError, TrainingError
from service.features.images import ImageError
from service.features.onnx import ModelLoadError, ModelNotFoundError, PresetError
from service.feed.forward.base import ForwardError
from service.sources import SourceError
from service.store import SchemaTooNewError, StoreError
from service.store.review_queries import UndoError


def test_every_user_error_shares_the_root():
    for cls in (ConfigError, StoreError, SchemaTooNewError, ModelError, ModelLoadError, ModelNotFoundError,
                PresetError, ImageError, SourceError, ForwardError, UndoError, AlreadyRunning, InputError,
                TrainingError):
        assert issubclass(cls, NijifeedError), cls


def _app(exc: Exception) -> typer.Typer:
    app = typer.Typer()

    @command(app, "boom")
    def boom() -> None:
        raise exc

    @command(app, "other")
    def other() -> None:  # a second command, so typer keeps the sub-command names
        pass

    return app


def test_a_user_error_is_one_line_with_its_exit_status():
    result = CliRunner().invoke(_app(InputError("no such folder: /x")), ["boom"])
    assert result.exit_code == 1
    assert "error: no such folder: /x" in result.output and "Traceback" not in result.output
    assert CliRunner().invoke(_app(ConfigError("NIJIFEED_X: bad")), ["boom"]).exit_code == 2


def test_a_bug_keeps_its_traceback():
    """A plain ValueError is not the user's to fix: it must not be dressed up as one red line."""
    result = CliRunner().invoke(_app(ValueError("a bug")), ["boom"])
    assert isinstance(result.exception, ValueError) and "error: a bug" not in result.output
