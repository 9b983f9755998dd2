"""Commands of the review queue."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from service.cli.base import app, command, console, ctx_of
from service.review import open_items

review_app = typer.Typer(no_args_is_help=True, help="The review queue: label what the model was unsure of.")
app.add_typer(review_app, name="review")


@command(review_app, "list")
def review_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
) -> None:
    """The review queue, most uncertain first."""
    items = open_items(ctx_of(ctx).store, limit=limit)
    if as_json:
        print(json.dumps([i.to_dict() for i in items], indent=2))
        return
    table = Table(title=f"review queue ({len(items)} shown)")
    for column in ("image", "media_key", "why", "p(2D)", "margin", "url"):
        table.add_column(column)
    for item in items:
        table.add_row(str(item.image_id), item.media_key or "", item.reason, f"{item.p_2d:.2f}", f"{item.margin:.2f}",
                      item.url or "")
    console.print(table)


