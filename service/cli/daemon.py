"""Commands of the service: run, poll, status, media, feed, review list, demo."""

from __future__ import annotations

from service.errors import InputError
from service.words import MEDIA_STATUSES

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from service.cli.base import Context, app, command, console, ctx_of, err

media_app = typer.Typer(no_args_is_help=True, help="Every image the service has seen, and what happened to it.")
app.add_typer(media_app, name="media")


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


def _runner(app_ctx: Context, stop: threading.Event | None = None):
    from service.pipeline.build import CycleRunner, make_source

    return CycleRunner(app_ctx.settings, app_ctx.extractor, make_source(app_ctx.settings, stop))


@command()
def poll(ctx: typer.Context, source: SourceOption = None) -> None:
    """Run one cycle (fetch, download, classify, route) and print where everything went."""
    from service.sources import SourceError

    runner = _runner(_with_source(ctx, source))
    try:
        summary = runner(threading.Event(), True)
    except SourceError as exc:
        err.print(f"[red]poll failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        runner.close()
    console.print(summary.line(), highlight=False)
    for message in summary.errors:
        err.print(f"[yellow]API:[/yellow] {message}", highlight=False)


@command()
def run(ctx: typer.Context, source: SourceOption = None) -> None:
    """The daemon: poll on a schedule until SIGTERM or Ctrl-C, serve the web feed, run the forwarders and retrains."""
    from service.daemon import AlreadyRunning, single_instance

    app_ctx = _with_source(ctx, source)
    try:
        with single_instance(app_ctx.settings.lock_path):
            serve(app_ctx)
    except AlreadyRunning as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None


def serve(app_ctx: Context, *, max_cycles: int | None = None, after_cycle=None, any_port: bool = False) -> None:
    """Wire the daemon: cycles on the poll interval, the web face, and the optional jobs beside them."""
    from service.daemon import Daemon
    from service.pipeline.build import ForwardRunner

    settings = app_ctx.settings
    web = _start_web(settings, any_port)
    stop = threading.Event()
    runner = _runner(app_ctx, stop)
    forwarder = ForwardRunner(settings)
    try:

        def cycle(stop_event, fetch):
            summary = runner(stop_event, fetch)  # the daemon logs its one-line summary
            if after_cycle is not None:
                after_cycle()
            return summary

        daemon = Daemon(cycle, interval=settings.poll_interval, jitter=settings.poll_jitter, max_cycles=max_cycles,
                        stop=stop)
        if forwarder:
            daemon.every(settings.forward_interval, forwarder, "forward")
        retrain = _retrain_job(app_ctx)
        if retrain is not None:
            daemon.every(settings.poll_interval, retrain, "retrain")  # checks a count; trains only when due
        console.print(f"nijifeed: polling {settings.source} every {settings.poll_interval} s; "
                      f"the 2D-only timeline at {web.url}/; data in {settings.data_dir}", highlight=False)
        daemon.install_signal_handlers()
        daemon.start()
        daemon.wait()
    finally:
        web.stop()
        runner.close()
        forwarder.close()


def _start_web(settings, any_port: bool):
    from service.web import serve_in_thread

    try:
        return serve_in_thread(settings, extra_routes=_extra_routes())
    except OSError as exc:
        if not any_port:
            raise InputError(f"cannot serve the web page on {settings.web_host}:{settings.web_port}: {exc}") from None
        return serve_in_thread(settings, port=0, extra_routes=_extra_routes())  # the demo takes any free port


@command()
def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts per status, review queue size, last poll, API reads today (and their estimated cost), active model."""
    app_ctx = ctx_of(ctx)
    store = app_ctx.store
    today = datetime.now(timezone.utc).strftime("%Y-%m-%dT00:00:00")
    last = store.last_poll()
    active = store.active_model()
    reads = store.reads_since(today)
    payload = {
        "media": {s: store.status_counts().get(s, 0) for s in MEDIA_STATUSES},
        "review_queue": store.open_review_count(),
        "last_poll": dict(last) if last else None,
        "reads_today": reads,
        "estimated_cost_today_usd": round(reads * app_ctx.settings.x_read_cost_usd, 4),
        "active_model": int(active["version"]) if active else None,
    }
    if payload["last_poll"]:
        payload["last_poll"].pop("summary_json", None)
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    table = Table(title="nijifeed status", show_header=False)
    for name, count in payload["media"].items():
        table.add_row(f"media {name}", str(count))
    table.add_row("review queue", str(payload["review_queue"]))
    if last:
        state = f"error: {last['error']}" if last["error"] else f"{last['posts']} posts, {last['new_media']} new media"
        table.add_row("last poll", f"{last['started_at']} ({state})")
    else:
        table.add_row("last poll", "never")
    table.add_row(
        "API reads today", f"{reads} (≈ ${payload['estimated_cost_today_usd']:.2f} at ${app_ctx.settings.x_read_cost_usd}/read)"
    )
    table.add_row("active model", f"v{payload['active_model']}" if active else "none (run `nijifeed train`)")
    console.print(table)


def _retrain_job(app_ctx: Context):
    """The scheduled retrain (after NIJIFEED_RETRAIN_AFTER_LABELS new labels), or None when disabled."""
    settings = app_ctx.settings
    if settings.retrain_after_labels <= 0:
        return None
    from service.pipeline.loop import maybe_retrain
    from service.pipeline.build import ThreadStores

    stores = ThreadStores(settings.db_path)
    return lambda: maybe_retrain(settings, stores.get(), app_ctx.extractor)


def _extra_routes():
    from service.web.report import routes

    return routes


# --- media ------------------------------------------------------------------------------------------------------


def _media_dict(store, row) -> dict:
    posts = store.posts_of_media(int(row["id"]))
    return {
        "id": int(row["id"]),
        "media_key": row["media_key"],
        "kind": row["kind"],
        "url": row["url"] or row["preview_url"],
        "status": row["status"],
        "reason": row["reason"],
        "sha256": row["sha256"],
        "verdict": row["verdict"],
        "p_2d": row["p_2d"],
        "model_version": row["model_version"],
        "posts": [{"id": p["id"], "url": p["url"], "author": p["author_handle"]} for p in posts],
        "updated_at": row["updated_at"],
    }


@command(media_app, "list")
def media_list(
    ctx: typer.Context,
    status_: Annotated[Optional[str], typer.Option("--status", help=f"one of: {', '.join(MEDIA_STATUSES)}")] = None,
    limit: Annotated[int, typer.Option(help="newest first, at most this many")] = 200,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every image seen, newest first, with its status (and the reason, for failed and skipped ones)."""
    if status_ is not None and status_ not in MEDIA_STATUSES:
        raise InputError(f"unknown status {status_!r}; choose one of: {', '.join(MEDIA_STATUSES)}")
    store = ctx_of(ctx).store
    items = [_media_dict(store, row) for row in store.list_media(status_, limit)]
    if as_json:
        print(json.dumps(items, indent=2))
        return
    table = Table(title=f"media ({status_ or 'all'})")
    for column in ("id", "media_key", "status", "p(2D)", "posts", "reason"):
        table.add_column(column)
    for item in items:
        p = "" if item["p_2d"] is None else f"{item['p_2d']:.2f}"
        table.add_row(str(item["id"]), item["media_key"], item["status"], p, str(len(item["posts"])), item["reason"] or "")
    console.print(table)


@command(media_app, "show")
def media_show(ctx: typer.Context, ref: Annotated[str, typer.Argument(metavar="ID", help="id or media_key")]) -> None:
    """What happened to one picture: status, reason, verdict, and every post that carries it."""
    store = ctx_of(ctx).store
    row = store.media_by_id_or_key(ref)
    if row is None:
        raise InputError(f"no media with id or key {ref!r} (see `nijifeed media list`)")
    item = _media_dict(store, row)
    item.update(width=row["width"], height=row["height"], cache_path=row["cache_path"], routed_by=row["routed_by"],
                margin=row["margin"], audit=bool(row["audit"]) if row["audit"] is not None else None)
    print(json.dumps(item, indent=2))


# --- demo -------------------------------------------------------------------------------------------------------


@command()
def demo(
    ctx: typer.Context,
    cycles: Annotated[Optional[int], typer.Option(help="stop after this many cycles (default: run until Ctrl-C)")] = None,
    interval: Annotated[int, typer.Option(help="seconds between polls")] = 5,
    reveal: Annotated[int, typer.Option(help="posts on the sandbox timeline at the start")] = 20,
    publish: Annotated[int, typer.Option(help="new posts appearing on the sandbox before each later poll")] = 8,
) -> None:
    """The whole service on this machine: a local X API sandbox with a sample timeline, and the daemon against it.

    Trains a model on the bundled samples at first use. Data goes to DATA_DIR/demo, apart from your own.
    """
    from service.cli.classify import print_training_report, train_from_folders
    from service.daemon import single_instance

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
            }
        )
        app_ctx = Context(settings)
        if app_ctx.store.active_model() is None:
            console.rule("first start: training on the bundled samples")
            samples = _samples_dir()
            trained = train_from_folders(app_ctx, samples / "train" / "not2d", samples / "train" / "2d")
            print_training_report(trained)
        console.rule(f"daemon against the sandbox at {sandbox.url}")
        with single_instance(settings.lock_path):
            serve(app_ctx, max_cycles=cycles, after_cycle=lambda: sandbox.publish(publish), any_port=True)
        ctx.obj = app_ctx
        status(ctx)
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


def _samples_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("service") / "samples"))
