"""Commands that say what the service has done: `status` (counts, last poll, API reads, model) and `media`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from service.cli.base import app, command, console, ctx_of
from service.config import Settings
from service.errors import InputError
from service.sources.read_limit import DailyReadLimit
from service.store import Store
from service.terminal import clean
from service.words import MEDIA_STATUSES

media_app = typer.Typer(no_args_is_help=True, help="Every image the service has seen, and what happened to it.")
app.add_typer(media_app, name="media")


@command()
def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts per status, review queue size, last poll, API reads today (and their estimated cost), active model."""
    app_ctx = ctx_of(ctx)
    if as_json:
        print(json.dumps(status_payload(app_ctx.store, app_ctx.settings), indent=2))
        return
    print_status(app_ctx.store, app_ctx.settings)


def status_payload(store: Store, settings: Settings) -> dict[str, Any]:
    """What `status --json` prints."""
    today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00")
    last = store.last_poll()
    active = store.active_model()
    reads = store.reads_since(today)
    counts = store.status_counts()
    payload: dict[str, Any] = {
        "media": {s: counts.get(s, 0) for s in MEDIA_STATUSES},
        "review_queue": store.open_review_count(),
        "last_poll": dict(last) if last else None,
        "reads_today": reads,
        "estimated_cost_today_usd": round(reads * settings.x_read_cost_usd, 4),
        "active_model": int(active["version"]) if active else None,
        "daily_read_limit": DailyReadLimit.from_settings(settings).status(store),
    }
    if payload["last_poll"]:
        payload["last_poll"].pop("summary_json", None)
    return payload


def print_status(store: Store, settings: Settings) -> None:
    """The status table (`status`, and the demo when it stops)."""
    payload = status_payload(store, settings)
    last = payload["last_poll"]
    table = Table(title="nijifeed status", show_header=False)
    for name, count in payload["media"].items():
        table.add_row(f"media {name}", str(count))
    table.add_row("review queue", str(payload["review_queue"]))
    if last:
        state = f"error: {last['error']}" if last["error"] else f"{last['posts']} posts, {last['new_media']} new media"
        table.add_row("last poll", Text(clean(f"{last['started_at']} ({state})")))  # the error quotes the API
    else:
        table.add_row("last poll", "never")
    table.add_row(
        "API reads today",
        f"{payload['reads_today']} (≈ ${payload['estimated_cost_today_usd']:.2f} at ${settings.x_read_cost_usd}/read)",
    )
    limit = payload["daily_read_limit"]
    if limit["limit"]:
        state = (f"reached: polling paused until {limit['resets_at']}" if limit["paused"]
                 else f"{limit['remaining']} reads left today")
        table.add_row("daily read limit", f"{limit['limit']} ({state})")
    else:
        table.add_row("daily read limit", "none (NIJIFEED_X_DAILY_READ_LIMIT)")
    active = payload["active_model"]
    table.add_row("active model", f"v{active}" if active is not None else "none (run `nijifeed train`)")
    console.print(table)


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
        table.add_row(str(item["id"]), Text(clean(item["media_key"])), item["status"], p, str(len(item["posts"])),
                      Text(clean(item["reason"])))  # keys and reasons come from the API and the files
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
