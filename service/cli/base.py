"""What every command shares: the Typer apps, the per-invocation Context, error handling, printing helpers."""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, ConsoleRenderable
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from service.classify.registry import TrainedModel
from service.config import ConfigError, Settings, load_settings, unknown_env_warnings
from service.errors import NijifeedError
from service.features import FeatureExtractor, ImageLimits, make_extractor
from service.features.images import ImageError
from service.store import Store
from service.terminal import clean

if TYPE_CHECKING:
    from service.pipeline.retrain import RetrainResult, TrainOptions

app = typer.Typer(no_args_is_help=True, add_completion=False, help="A 2D-illustration-only view of your X timeline.")
model_app = typer.Typer(no_args_is_help=True, help="Trained models: inspect, list, roll back.")
app.add_typer(model_app, name="model")

console = Console()
err = Console(stderr=True)


class Context:
    """What every command needs, built on first use so `--help` and errors stay fast."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> Store:
        ensure_data_dir(self.settings)
        return Store.open(self.settings.db_path)

    @cached_property
    def extractor(self) -> FeatureExtractor:
        return make_extractor(self.settings)

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits.from_settings(self.settings)

    def active_model(self) -> TrainedModel:
        from service.pipeline.build import ActiveModel

        return ActiveModel.from_settings(self.settings, self.store, self.extractor).load()


def ensure_data_dir(settings: Settings) -> None:
    """Create the data dir and check that this user may write there; a bad NIJIFEED_DATA_DIR is then one line like
    the other bad settings, not a traceback from SQLite or the lock file."""
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"NIJIFEED_DATA_DIR: cannot create {data_dir}: {exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise ConfigError(f"NIJIFEED_DATA_DIR: cannot write in {data_dir}: {exc.strerror or exc} (make it writable "
                          "by the user running nijifeed, or choose another folder)") from None


def ctx_of(ctx: typer.Context) -> Context:
    return ctx.obj


def fail(exc: NijifeedError) -> typer.Exit:
    """Print a user error as one red line; the exit to raise carries the error's own status."""
    print_error(exc)
    return typer.Exit(exc.exit_code)


def print_error(message: object, label: str = "error:", style: str = "red") -> None:
    """``label`` in ``style``, then ``message`` cleaned of terminal escapes and never read as markup (messages
    quote paths, URLs, names and API answers); soft-wrapped, so one line stays one line however long."""
    err.print(Text.assemble((label, style), " ", clean(message, newlines=True)), highlight=False, soft_wrap=True)


class CleanRichHandler(RichHandler):
    """Rich's log handler, with every record's text cleaned of terminal escapes (log lines quote API answers,
    file names and post fields)."""

    def render_message(self, record: logging.LogRecord, message: str) -> ConsoleRenderable:
        return super().render_message(record, clean(message, newlines=True))


def command(group: typer.Typer = app, name: str | None = None):
    """Register a command whose user errors end in a clear message and exit status 1."""

    def register(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except NijifeedError as exc:
                raise fail(exc) from None

        return group.command(name)(wrapper)

    return register


@app.callback()
def _main(ctx: typer.Context, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        if ctx.invoked_subcommand == "doctor":  # doctor reports a bad setting as its first failed check
            ctx.obj = exc
            return
        raise fail(exc) from None
    level = "DEBUG" if verbose else settings.log_level
    logging.basicConfig(level=level, format="%(message)s", handlers=[CleanRichHandler(console=err, show_path=False)])
    if not verbose:
        # One line per request or job run drowns the one line per cycle that matters.
        for chatty in ("httpx", "httpcore", "apscheduler", "tweepy", "uvicorn.access"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    for warning in unknown_env_warnings():  # a misspelt setting is ignored by pydantic-settings: say so
        print_error(warning, "warning:", "yellow")
    ctx.obj = Context(settings)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def report_failures(failures: list[ImageError]) -> None:
    for failure in failures:
        print_error(f"{failure.source}: {failure.reason}", "skipped", "yellow")


def fmt(value: float) -> str:
    return "—" if value != value else f"{value:.3f}"  # NaN (nothing to measure) shows as a dash


def metrics_table(title: str, rows: dict[str, dict]) -> Table:
    table = Table(title=title)
    table.add_column("rule")
    for column in ("accuracy", "confident acc.", "review rate", "2D precision", "2D to feed", "lost 2D"):
        table.add_column(column, justify="right")
    for name, m in rows.items():
        table.add_row(
            name,
            fmt(m["accuracy"]),
            fmt(m["confident_accuracy"]),
            fmt(m["review_rate"]),
            fmt(m["precision_2d"]),
            fmt(m["recall_2d"]),
            str(m["lost_2d"]),
        )
    return table


def train_on_folders(
    app_ctx: Context,
    neg_dir: Path,
    pos_dir: Path,
    options: TrainOptions,
) -> RetrainResult:
    """`train --from-folders`: the pipeline's folder training set (with a progress bar and the files it skipped),
    then its one train-and-publish, saying what it trains on."""
    import numpy as np

    from service.features.images import list_images
    from service.pipeline.retrain import folder_training_set, train_and_publish

    settings = app_ctx.settings
    total = len(list_images(neg_dir)) + len(list_images(pos_dir)) if neg_dir.is_dir() and pos_dir.is_dir() else 0
    with progress_bar(total, "features") as advance:
        training = folder_training_set(settings, app_ctx.store, app_ctx.extractor, neg_dir, pos_dir,
                                       on_progress=advance)
    for reason in training.unusable:
        print_error(reason, "skipped", "yellow")
    data = training.data
    console.print(
        f"training [bold]{options.kind or settings.model}[/bold] on {len(data.y)} images ({int(data.y.sum())} 2D, "
        f"{int((data.y == 0).sum())} not 2D, {len(np.unique(data.groups))} near-duplicate groups), "
        f"features: {app_ctx.extractor.name}"
    )
    return train_and_publish(settings, app_ctx.store, app_ctx.extractor, training, options=options)


def print_training_report(model: TrainedModel) -> None:
    """A model's cross-validated figures, at the published rule and at its own, and how its threshold was chosen."""
    cv = model.meta.cv
    rule = model.rule
    choice = cv["threshold_choice"]
    label = f"{rule.score_kind} 2D<{rule.threshold:g}" + (
        f", not2D<{rule.threshold_not2d:g}" if rule.threshold_not2d is not None else ""
    )
    console.print(
        metrics_table(
            f"cross-validated ({cv['folds']} folds, grouped)",
            {"published (margin < 0.3)": cv["at_published_rule"], f"chosen ({label})": cv["at_rule"]},
        )
    )
    status = "met" if choice["met"] else "[yellow]NOT met[/yellow] (tightest threshold used)"
    console.print(
        f"threshold for 2D precision ≥ {choice['target']:g}: {choice['threshold']:g} — target {status}; "
        f"CV precision {fmt(choice['precision'])} on {choice['feed']} feed images, "
        f"{fmt(choice['coverage_2d'])} of 2D images reach the feed"
    )
