"""Commands that run the service: `run` (the daemon), `poll` (one cycle now) and `demo` (the daemon against a
local X API sandbox). They parse options and print; ``pipeline.service.Service`` is the daemon itself."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from service.cli.base import (
    Context,
    command,
    console,
    ctx_of,
    ensure_data_dir,
    print_error,
    print_training_report,
)
from service.cli.status import print_status
from service.terminal import clean

if TYPE_CHECKING:
    from service.pipeline.service import Service

SourceOption = Annotated[
    Optional[str], typer.Option("--source", help='"x" (the home timeline) or "folder:DIR"; default NIJIFEED_SOURCE')
]


def _with_source(ctx: typer.Context, source: str | None) -> Context:
    """The context, with ``--source`` validated like the setting it overrides."""
    app_ctx = ctx_of(ctx)
    if source is None:
        return app_ctx
    from service.config import load_settings

    return Context(load_settings(**{**app_ctx.settings.model_dump(), "source": source}))


@command()
def poll(ctx: typer.Context, source: SourceOption = None) -> None:
    """Run one cycle (fetch, download, classify, route) and print where everything went."""
    from service.pipeline.build import CycleRunner, make_source
    from service.sources import SourceError

    app_ctx = _with_source(ctx, source)
    ensure_data_dir(app_ctx.settings)
    cycle_source = make_source(app_ctx.settings)  # missing credentials end here, before the extractor loads
    runner = CycleRunner(app_ctx.settings, app_ctx.extractor, cycle_source)
    try:
        summary = runner(threading.Event(), True)
    except SourceError as exc:
        print_error(exc, "poll failed:")
        raise typer.Exit(1) from None
    finally:
        runner.close()
    console.print(clean(summary.line()), highlight=False, markup=False)
    for message in summary.errors:
        print_error(message, "API:", "yellow")


@command()
def run(ctx: typer.Context, source: SourceOption = None) -> None:
    """The daemon: poll on a schedule until SIGTERM or Ctrl-C, serve the web feed, run the forwarders and retrains."""
    from service.pipeline.service import Service

    app_ctx = _with_source(ctx, source)
    ensure_data_dir(app_ctx.settings)
    with Service.from_settings(app_ctx.settings, extractor=app_ctx.extractor) as service:
        service.run(on_start=_announce)


def _announce(service: Service) -> None:
    settings = service.settings
    console.print(f"nijifeed: polling {settings.source} every {settings.poll_interval} s; "
                  f"the 2D-only timeline at {service.url}/; data in {settings.data_dir}", highlight=False)


@command()
def demo(
    ctx: typer.Context,
    cycles: Annotated[
        Optional[int], typer.Option(help="stop after this many cycles (default: run until Ctrl-C)")
    ] = None,
    interval: Annotated[int, typer.Option(help="seconds between polls")] = 5,
    reveal: Annotated[int, typer.Option(help="posts on the sandbox timeline at the start")] = 20,
    publish: Annotated[int, typer.Option(help="new posts appearing on the sandbox before each later poll")] = 8,
) -> None:
    """The whole service on this machine: a local X API sandbox with a sample timeline that never runs out, and
    the daemon against it.

    Uses the starter model (trained on the bundled samples at first use). Data goes to DATA_DIR/demo, apart from
    your own.
    """
    from service.pipeline.retrain import ensure_starter
    from service.pipeline.service import Service

    base = ctx_of(ctx).settings
    with _demo_sandbox(base, reveal) as sandbox:
        settings = base.model_copy(
            update={
                "data_dir": base.data_dir / "demo",
                "source": "x",
                "x_api_base_url": sandbox.url,
                "x_bearer_token": _secret("demo-user-token"),
                "poll_interval": interval,
                "poll_jitter": 0.0,
                "starter_model": True,
            }
        )
        app_ctx = Context(settings)
        if app_ctx.store.active_model() is None:
            console.rule("first start: the starter model, trained on the bundled samples")
            with console.status("training the starter model on the bundled samples"):
                trained = ensure_starter(settings, app_ctx.store, app_ctx.extractor)
            if trained is not None:
                print_training_report(trained.model)
        console.rule(f"daemon against the sandbox at {sandbox.url}")
        with Service.from_settings(settings, extractor=app_ctx.extractor, max_cycles=cycles,
                                   after_cycle=lambda: sandbox.publish(publish), any_port=True) as service:
            service.run(on_start=_announce)
        print_status(app_ctx.store, settings)
        console.print(
            f"see the feed with `NIJIFEED_DATA_DIR={settings.data_dir} nijifeed feed`, the queue with "
            f"`... nijifeed review list`, every image with `... nijifeed media list`",
            highlight=False,
        )


def _demo_sandbox(settings, reveal: int):
    """The sandbox on a steady port (web port + 1), so avatar URLs stored by an earlier demo run still resolve;
    any free port when that one is taken."""
    from service.sandbox import Sandbox

    try:
        return Sandbox(reveal=reveal, port=settings.web_port + 1).start()
    except (OSError, OverflowError):
        return Sandbox(reveal=reveal).start()


def _secret(value: str):
    from pydantic import SecretStr

    return SecretStr(value)

