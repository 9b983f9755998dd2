"""Commands of the feed: `feed` (and, with the web issue, `web`)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from service.cli.base import command, console, ctx_of
from service.feed import feed_entries


# --- feed and review --------------------------------------------------------------------------------------------


@command()
def feed(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(help="at most this many posts")] = 50,
    since: Annotated[Optional[str], typer.Option(help="only posts at or after this ISO time")] = None,
) -> None:
    """The 2D-only timeline, newest first."""
    entries = feed_entries(ctx_of(ctx).store, limit=limit, since=since)
    if as_json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    for entry in entries:
        who = f"{entry.author_name or ''} @{entry.author_handle or '?'}"
        console.print(f"[bold]{who}[/bold] · {entry.created_at} · {entry.url}", highlight=False)
        if entry.text:
            console.print(f"  {entry.text}", highlight=False)
        for image in entry.images:
            console.print(f"  🖼  {image.url}  p(2D)={image.p_2d:.2f} (model v{image.model_version})", highlight=False)
    if not entries:
        console.print("the feed is empty")


