"""Commands of the review queue (interactive and scriptable) and the report."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from service.cli.base import Context, app, command, console, ctx_of, err, fail, print_error
from service.errors import NijifeedError
from service.review import UndoError, open_items, parse_label, resolve
from service.review import label as label_image
from service.review import undo as undo_label
from service.terminal import clean

review_app = typer.Typer(
    invoke_without_command=True,
    help="The review queue: label what the model was unsure of. Without a command: review interactively, one "
    "image at a time (a/2 = 2D, x/n = not 2D, space = skip, u/backspace = undo, o = open, ? = help, q = quit).",
)
app.add_typer(review_app, name="review")


def _who() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@review_app.callback()
def review(ctx: typer.Context) -> None:
    """One image at a time: a/2 = 2D, x/n = not 2D, space = skip, u/backspace = undo, o = open, ? = help, q = quit."""
    if ctx.invoked_subcommand is not None:
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        err.print("[red]error:[/red] interactive review needs a terminal; use `nijifeed review list`, "
                  "`review label ID 2d|not2d` or `review export DIR`", highlight=False)
        raise typer.Exit(2)
    try:
        tally = interactive(ctx_of(ctx))
        remaining = ctx_of(ctx).store.open_review_count()
    except NijifeedError as exc:
        raise fail(exc) from None
    console.print(f"{tally.line()}; {remaining} left in the queue", highlight=False)


def interactive(app_ctx: Context):
    from service.review import graphics
    from service.review.display import drawer, opener
    from service.review.keys import single_keys
    from service.review.session import ReviewSession

    settings, store = app_ctx.settings, app_ctx.store
    protocol = graphics.detect(os.environ, settings.review_graphics)

    def items():
        return open_items(store, limit=None, audit_every=settings.review_audit_every)

    session = ReviewSession(
        store,
        items(),
        draw=drawer(settings.cache_dir, protocol, app_ctx.limits, sys.stdout.fileno()),
        open_item=opener(settings.cache_dir, os.environ),
        refill=items,
        author=_who(),
    )

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    with single_keys(sys.stdin.fileno()) as next_key:
        return session.run(next_key, write, width=os.get_terminal_size(sys.stdout.fileno()).columns)


@command(review_app, "list")
def review_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
) -> None:
    """The review queue in the order `nijifeed review` shows it: most uncertain first, audit items mixed in."""
    app_ctx = ctx_of(ctx)
    items = open_items(app_ctx.store, limit=limit, audit_every=app_ctx.settings.review_audit_every)
    if as_json:
        print(json.dumps([i.to_dict() for i in items], indent=2))
        return
    table = Table(title=f"review queue ({len(items)} shown of {app_ctx.store.open_review_count()})")
    for column in ("image", "media_key", "why", "p(2D)", "margin", "author", "url"):
        table.add_column(column)
    for item in items:  # fields from the timeline: cleaned, and cells of Text so that none is read as markup
        table.add_row(str(item.image_id), Text(clean(item.media_key)), item.reason, _num(item.p_2d), _num(item.margin),
                      Text(f"@{clean(item.author_handle)}" if item.author_handle else ""),
                      Text(clean(item.post_url or item.url)))
    console.print(table)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


@command(review_app, "label")
def review_label(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help="image id or media key (see `review list`)")],
    answer: Annotated[str, typer.Argument(metavar="2d|not2d")],
) -> None:
    """Answer for one image: 2d puts its posts in the feed, not2d drops them. Undo with `review undo`."""
    store = ctx_of(ctx).store
    image_id = resolve(store, ref)
    label = parse_label(answer)
    label_id = label_image(store, image_id, label, author=_who())
    route = "the feed" if label == "2d" else "dropped"
    console.print(f"image {image_id}: {label} → {route} (label {label_id})", highlight=False)


@command(review_app, "undo")
def review_undo(ctx: typer.Context) -> None:
    """Take back the latest answer given in review: the image goes back where it was (the last 10 can be undone)."""
    try:
        record = undo_label(ctx_of(ctx).store)
    except UndoError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    route = record["image"]["route"] or "unrouted"
    console.print(f"image {record['image_id']}: answer {record['label']} taken back; it is back in {route}",
                  highlight=False)


@command(review_app, "stats")
def review_stats(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Open items, answers by kind and source, auto-resolved items, labels waiting for the next retrain."""
    from service.pipeline.retrain import new_labels

    app_ctx = ctx_of(ctx)
    store = app_ctx.store
    counts = store.review_counts()
    payload: dict[str, object] = {name: dict(counter) for name, counter in counts.items()}
    payload["open_total"] = sum(counts["open"].values())
    payload["undoable"] = len(store.undo_journal())
    payload["new_labels_since_model"] = new_labels(store)
    payload["retrain_after_labels"] = app_ctx.settings.retrain_after_labels
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    table = Table(title="review", show_header=False)
    table.add_row("open", f"{payload['open_total']} ({_pairs(counts['open'])})")
    table.add_row("resolved", _pairs(counts["resolved"]) or "none")
    table.add_row("labels", _pairs(counts["labels"]) or "none")
    table.add_row("labels by source", _pairs(counts["sources"]) or "none")
    table.add_row("can be undone", str(payload["undoable"]))
    retrain = payload["retrain_after_labels"]
    table.add_row("new labels since the last model",
                  f"{payload['new_labels_since_model']}" + (f" (retrain at {retrain})" if retrain else " (auto off)"))
    console.print(table)


def _pairs(counter) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counter.items()))


@command(review_app, "export")
def review_export(
    ctx: typer.Context, folder: Annotated[Path, typer.Argument(help="where to write the images")]
) -> None:
    """Write the queued images to FOLDER (ids in the file names) to sort into FOLDER/2d and FOLDER/not2d."""
    from service.review.exchange import export_queue

    app_ctx = ctx_of(ctx)
    result = export_queue(app_ctx.store, folder, cache_dir=app_ctx.settings.cache_dir,
                          audit_every=app_ctx.settings.review_audit_every)
    console.print(f"{len(result.written)} images written to {folder}; sort them into {folder / '2d'} and "
                  f"{folder / 'not2d'}, then run `nijifeed review import {folder}`", highlight=False, markup=False)
    if result.already_sorted:
        console.print(f"{result.already_sorted} already sorted there and not imported yet: not written again")
    if result.not_cached:
        err.print(f"[yellow]{len(result.not_cached)} images are no longer cached:[/yellow] "
                  f"{', '.join(map(str, result.not_cached))}", highlight=False)


@command(review_app, "import")
def review_import(ctx: typer.Context, folder: Annotated[Path, typer.Argument(help="a folder made by export")]) -> None:
    """Store the answers sorted into FOLDER/2d and FOLDER/not2d; unknown or changed files are reported, not used."""
    from service.review.exchange import import_answers

    result = import_answers(ctx_of(ctx).store, folder)
    console.print(
        f"imported {sum(result.labelled.values())} answers ({result.labelled['2d']} 2D, "
        f"{result.labelled['not2d']} not 2D); {result.unchanged} already answered the same; "
        f"{result.unsorted} not sorted yet", highlight=False,
    )
    for title, paths in (("unknown (not named by an export, or no such image)", result.unknown),
                         ("changed since the export (content differs)", result.changed),
                         ("in both 2d/ and not2d/", result.conflicts)):
        if paths:
            err.print(f"[yellow]{len(paths)} {title}, not used:[/yellow]", highlight=False)
            for path in paths:  # names of files someone put there
                err.print(Text(f"  {clean(path)}"), highlight=False)
    if result.unknown or result.changed or result.conflicts:
        raise typer.Exit(1)


# --- report -----------------------------------------------------------------------------------------------------


@command()
def report(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    days: Annotated[int, typer.Option(help="days of review load shown")] = 14,
) -> None:
    """Feed precision from audit labels (with its 95 % interval), review load per day, model history."""
    from service.review.report import build_report

    data = build_report(ctx_of(ctx).store, days=days)
    if as_json:
        print(json.dumps(data.to_dict(), indent=2))
        return
    for name, estimate, what in (("feed precision", data.feed_precision, "audited 2D verdicts confirmed 2D"),
                                 ("dropped correctly", data.dropped_correct, "audited not-2D verdicts confirmed")):
        if estimate.n:
            low, high = estimate.interval
            console.print(f"{name}: [bold]{estimate.value:.1%}[/bold] (95 % CI {low:.1%}–{high:.1%}; "
                          f"{estimate.successes} of {estimate.n} {what})")
        else:
            console.print(f"{name}: no audit labels yet (label audit items in `nijifeed review`)")
    models = Table(title="models")
    for column in ("version", "created", "kind", "threshold", "CV n", "CV review", "CV precision", "CV 2D to feed",
                   "live images", "live review", "audit precision"):
        models.add_column(column, justify="right")
    for m in data.models:
        audit = m.audit_precision
        models.add_row(
            f"v{m.version}{' ●' if m.active else ''}", m.created_at[:16].replace("T", " "),
            f"{m.kind} (starter)" if m.starter else m.kind,
            "—" if m.threshold is None else f"{m.threshold:g}", str(m.cv_n or "—"), _pct(m.cv_review_rate),
            _pct(m.cv_precision), _pct(m.cv_recall), str(m.live_images), _pct(m.live_review_rate),
            f"{audit['value']:.1%} (n={audit['n']})" if audit else "—",
        )
    console.print(models)
    for m in data.models:
        if m.not_activated and not m.active:
            console.print(f"v{m.version} was not activated: " + "; ".join(m.not_activated), highlight=False,
                          markup=False)
    load = Table(title=f"review load per day (last {days}, UTC)")
    for column in ("day", "queued", "answered", "auto-resolved"):
        load.add_column(column, justify="right")
    for day in data.load:
        load.add_row(day.day, str(day.queued), str(day.labelled), str(day.auto))
    console.print(load)
    console.print(f"open queue: {_pairs(data.open_items) or 'empty'}; "
                  f"{data.labels_since_model} new labels since the last training", highlight=False)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"
