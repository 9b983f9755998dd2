"""Commands of the feed: `feed` (print the 2D-only timeline) and `web` (serve it)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.text import Text

from service.cli.base import command, console, ctx_of, print_error
from service.feed import FeedEntry, feed_entries
from service.feed.times import parse_since
from service.terminal import clean, json_text


@command()
def feed(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print the entries as a JSON list")] = False,
    limit: Annotated[int, typer.Option(min=1, help="at most this many posts, newest first")] = 50,
    since: Annotated[
        Optional[str],
        typer.Option(help="only posts that appeared at or after TIME: ISO 8601 (2026-05-09, 2026-05-09T07:30Z; "
                          "no zone means UTC) or a duration back from now (30m, 6h, 2d, 1w)", metavar="TIME"),
    ] = None,
) -> None:
    """The 2D-only timeline, newest first: one entry per post (a retweeted post once, however often it
    reappears), showing only its images that reached the feed, each with p(2D) and the model that judged it."""
    bound = parse_since(since) if since else None
    entries = feed_entries(ctx_of(ctx).store, limit=limit, since=bound)
    if as_json:
        print(json_text([e.to_dict() for e in entries], indent=2))
        return
    for entry in entries:
        _print_entry(entry)
    if not entries:
        console.print("the feed is empty" + (f" since {since}" if since else ""))


def _print_entry(entry: FeedEntry) -> None:
    """Every field comes from the timeline: cleaned of terminal escapes and given to rich as Text, never markup."""
    who = f"{clean(entry.author_name)} @{clean(entry.author_handle) or '?'}".strip()
    _line(Text.assemble((who, "bold"), f" · {clean(entry.created_at)} · {clean(entry.url)}"))
    if entry.reposted_by:
        _line(Text(f"  ↻ retweeted by {', '.join('@' + clean(h) for h in entry.reposted_by)}"))
    if entry.echoes:
        _line(Text(f"  ↪ {clean(entry.echo_line())}"))
    if entry.text:
        _line(Text(f"  {clean(entry.text, newlines=True)}"))
    for image in entry.images:
        p = "?" if image.p_2d is None else f"{image.p_2d:.2f}"
        how = "labelled 2D" if image.routed_by == "label" else f"model v{image.model_version}"
        _line(Text(f"  🖼  {clean(image.url)}  p(2D)={p} ({how})"))


def _line(text: Text) -> None:
    console.print(text, highlight=False, emoji=False)


@command()
def web(
    ctx: typer.Context,
    host: Annotated[Optional[str], typer.Option(help="address to bind (default NIJIFEED_WEB_HOST)")] = None,
    port: Annotated[Optional[int], typer.Option(min=0, max=65535, help="port (default NIJIFEED_WEB_PORT)")] = None,
) -> None:
    """Serve the timeline page, /feed.atom, /feed.json, /healthz, /readyz, /metrics and /report until Ctrl-C.

    The daemon (`nijifeed run`) serves the same pages itself; this runs them alone, e.g. beside a daemon on
    another machine sharing the data dir, or to look at the feed without polling."""
    from service.web.server import serve_forever

    settings = ctx_of(ctx).settings
    updates = {k: v for k, v in (("web_host", host), ("web_port", port)) if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
    try:
        serve_forever(settings, on_start=lambda url: console.print(f"nijifeed web: {url}/ (Ctrl-C stops)",
                                                                   highlight=False))
    except OSError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
