"""Commands of the published method: train, triage, eval, features, model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from service.classify.evaluate import evaluate as evaluate_metrics
from service.classify.evaluate import risk_coverage
from service.classify.models import MODELS
from service.classify.registry import ModelError, TrainedModel, load_model
from service.classify.training import TrainingData
from service.cli.base import (
    Context,
    command,
    console,
    ctx_of,
    err,
    fmt,
    metrics_table,
    model_app,
    print_error,
    print_training_report,
    progress_bar,
    report_failures,
    train_on_folders,
)
from service.errors import InputError
from service.features.images import list_images
from service.pipeline import labelled_folders
from service.route import FOLDER_OF_VERDICT

if TYPE_CHECKING:
    from service.pipeline.retrain import RetrainResult, TrainOptions

# --- train / triage / eval / features --------------------------------------------------------------------------


@command()
def train(
    ctx: typer.Context,
    from_folders: Annotated[
        Optional[tuple[Path, Path]],
        typer.Option("--from-folders", metavar="NEG_DIR POS_DIR",
                     help="not-2D folder, 2D folder; without it: every label in the store plus the first folders"),
    ] = None,
    model: Annotated[Optional[str], typer.Option(help=f"one of: {', '.join(MODELS)}")] = None,
    target_precision: Annotated[Optional[float], typer.Option(help="2D precision the threshold aims for")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="fixed threshold instead of the precision target")] = None,
    force: Annotated[bool, typer.Option("--force", help="activate the new model even if it is worse")] = False,
    starter: Annotated[
        bool, typer.Option("--starter", help="rebuild the starter model: the bundled labelled samples alone")
    ] = False,
    samples: Annotated[
        Optional[bool],
        typer.Option("--samples/--no-samples",
                     help="with your labels, keep (or leave out) the bundled samples; default: as the active model")
    ] = None,
) -> None:
    """Learn "2D or not" from your review answers plus what the first model learnt from (the bundled samples of
    the starter model, or the folders first used), from labelled folders, or (--starter) from the bundled samples
    alone; report CV figures before and after, activate the new model and re-score the images waiting for review.
    A model worse than the active one (see NIJIFEED_RETRAIN_TOLERANCE) is saved but not activated, unless --force."""
    from service.pipeline.retrain import TrainOptions, retrain

    app_ctx = ctx_of(ctx)
    kind = model or app_ctx.settings.model
    if kind not in MODELS:
        raise InputError(f"unknown model {kind!r}; choose one of: {', '.join(MODELS)}")
    if starter and from_folders is not None:
        raise InputError("--starter and --from-folders are two different training sets: choose one")
    if samples is not None and (starter or from_folders is not None):
        raise InputError("--samples/--no-samples goes with training on your labels, not with --starter or "
                         "--from-folders")
    options = TrainOptions(kind=kind, target_precision=target_precision, threshold=threshold, force=force)
    if from_folders is not None:
        result = train_on_folders(app_ctx, *from_folders, options)
    elif starter:
        result = _train_starter(app_ctx, options)
    else:
        with console.status("gathering labels and features"):
            result = retrain(app_ctx.settings, app_ctx.store, app_ctx.extractor, options=options, samples=samples)
        t = result.training
        folders = f"{t.folders[0]} and {t.folders[1]}" if t.folders else "no folders"
        parts = [f"{t.from_labels} labels from the store", f"{t.from_folders} from {folders}",
                 f"{t.from_samples} bundled samples" if t.samples else "no bundled samples"]
        console.print(f"trained [bold]{kind}[/bold] on {len(t.data.y)} images: {', '.join(parts)} ({t.overridden} "
                      "folder or sample answers overridden by a label)", highlight=False)
        for reason in t.unusable:
            print_error(reason, "not used", "yellow")
    trained, rescored, cv_before = result.model, result.rescored, result.cv_before
    print_training_report(trained)
    if cv_before is not None:
        console.print(metrics_table(
            "before → after (each model cross-validated on its own training set)",
            {f"before (v{result.previous_version})": cv_before["at_rule"],
             f"after (v{trained.version})": trained.meta.cv["at_rule"]},
        ))
        console.print(f"review rate (CV): {fmt(cv_before['at_rule']['review_rate'])} → "
                      f"{fmt(trained.meta.cv['at_rule']['review_rate'])}")
    if not result.activated:
        console.print(f"[yellow]model v{trained.version} is saved but NOT activated[/yellow] "
                      f"(v{result.previous_version} stays active): {escape('; '.join(result.refused))}. "
                      f"Activate it anyway with `nijifeed model use {trained.version}` or retrain with --force.")
        raise typer.Exit(3)
    console.print(f"review queue: {result.queue_before} → {result.queue_after} ({rescored['feed']} sent to the feed "
                  f"and {rescored['dropped']} dropped by the new model, {rescored['audit']} kept as audit items, "
                  f"{rescored['uncertain']} still uncertain)")
    if result.refused:
        console.print(f"[yellow]activated although[/yellow] {escape('; '.join(result.refused))}")
    console.print(f"model v{trained.version} is now active")


def _train_starter(app_ctx: Context, options: TrainOptions) -> RetrainResult:
    """`train --starter`: the bundled samples' training set (with a progress bar), trained and published."""
    from service.pipeline.retrain import starter_training_set, train_and_publish
    from service.pipeline.starter import starter_dir, starter_files

    settings = app_ctx.settings
    with progress_bar(len(starter_files()), "features") as advance:
        training = starter_training_set(settings, app_ctx.store, app_ctx.extractor, on_progress=advance)
    for reason in training.unusable:
        print_error(reason, "skipped", "yellow")
    data = training.data
    console.print(
        f"training the starter model ([bold]{options.kind}[/bold]) on {len(data.y)} bundled samples ({int(data.y.sum())} 2D, "
        f"{int((data.y == 0).sum())} not 2D, {len(np.unique(data.groups))} near-duplicate groups) from "
        f"{starter_dir()}, features: {app_ctx.extractor.name}", highlight=False
    )
    return train_and_publish(settings, app_ctx.store, app_ctx.extractor, training, options=options)


def labelled_data(app_ctx: Context, neg_dir: Path, pos_dir: Path) -> TrainingData:
    """Features and labels of two folders (for `eval`), with a progress bar; unreadable files reported and skipped."""
    total = len(list_images(neg_dir)) + len(list_images(pos_dir)) if neg_dir.is_dir() and pos_dir.is_dir() else 0
    with progress_bar(total, "features") as advance:
        labelled = labelled_folders.load_labelled(
            app_ctx.extractor,
            neg_dir,
            pos_dir,
            limits=app_ctx.limits,
            batch_size=app_ctx.settings.batch_size,
            store=app_ctx.store,
            on_progress=advance,
        )
    report_failures(labelled.failures)
    return labelled.data


@command()
def triage(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="folder of images to sort")],
    out: Annotated[Path, typer.Option("--out", help="where positive/, negative/, uncertain/ and report.csv go")],
    move: Annotated[bool, typer.Option("--move", help="move files instead of copying")] = False,
) -> None:
    """Sort every image of FOLDER into OUT/positive, OUT/negative or OUT/uncertain, with OUT/report.csv."""
    app_ctx = ctx_of(ctx)
    if not folder.is_dir():
        print_error(f"not a folder: {folder}")
        raise typer.Exit(2)
    model = load_active(app_ctx)
    with progress_bar(len(list_images(folder)), "triage") as advance:
        rows, failures = labelled_folders.triage(
            model,
            app_ctx.extractor,
            folder,
            limits=app_ctx.limits,
            batch_size=app_ctx.settings.batch_size,
            store=app_ctx.store,
            on_progress=advance,
        )
    report_failures(failures)
    report = labelled_folders.place(rows, folder, out, move=move)
    summary = Table(title=f"triage of {folder} with model v{model.version}")
    summary.add_column("verdict")
    summary.add_column("folder")
    summary.add_column("images", justify="right")
    for verdict, name in FOLDER_OF_VERDICT.items():
        summary.add_row(verdict, str(out / name), str(sum(r.verdict == verdict for r in rows)))
    summary.add_row("unreadable", "—", str(len(failures)))
    console.print(summary)
    console.print(f"report: {report}")


def load_active(app_ctx: Context) -> TrainedModel:
    try:
        return app_ctx.active_model()
    except ModelError as exc:
        print_error(exc)
        raise typer.Exit(1) from None


@command(name="eval")
def eval_(
    ctx: typer.Context,
    neg_dir: Path,
    pos_dir: Path,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """The active model on a labelled set: accuracy, review rate, feed precision and recall, risk–coverage."""
    app_ctx = ctx_of(ctx)
    model = load_active(app_ctx)
    data = labelled_data(app_ctx, neg_dir, pos_dir)
    rule = model.rule
    p = model.p_2d(data.X)
    metrics = evaluate_metrics(data.y, p, rule).to_dict()
    table = risk_coverage(data.y, p, rule)
    seen = model.seen_in_training(data.sha256s)
    if seen:
        err.print(f"[yellow]warning:[/yellow] {seen} of {len(data.sha256s)} images were in model v{model.version}'s "
                  "training set: these figures are no test of it (use images it never saw)", highlight=False)
    if as_json:
        payload = {"model": model.version, "rule": rule.to_dict(), "metrics": metrics, "risk_coverage": table,
                   "seen_in_training": seen}
        print(json.dumps(payload, indent=2))
        return
    console.print(metrics_table(f"model v{model.version} on {metrics['n']} images", {"active rule": metrics}))
    rc = Table(title=f"risk–coverage ({rule.score_kind})")
    for column in ("threshold", "coverage", "risk", "decided"):
        rc.add_column(column, justify="right")
    for row in table:
        rc.add_row(f"{row['threshold']:g}", fmt(row["coverage"]), fmt(row["risk"]), str(row["decided"]))
    console.print(rc)


@command()
def features(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="image files or folders")],
    out: Annotated[Path, typer.Option("--out", help="the .npz file to write (arrays: paths, features)")],
) -> None:
    """Export feature vectors for your own experiments."""
    app_ctx = ctx_of(ctx)
    files: list[Path] = []
    for path in paths:
        files.extend(list_images(path) if path.is_dir() else [path])
    with progress_bar(len(files), "features") as advance:
        got = labelled_folders.extract_folder_files(
            app_ctx.extractor,
            files,
            limits=app_ctx.limits,
            batch_size=app_ctx.settings.batch_size,
            store=None,
            on_progress=advance,
        )
    report_failures(got.failures)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        paths=np.array([str(p) for p in got.paths]),
        features=got.features,
        extractor=np.array(app_ctx.extractor.name),
    )
    console.print(f"{len(got.paths)} vectors of {app_ctx.extractor.dim} ({app_ctx.extractor.name}) → {out}")


# --- model ------------------------------------------------------------------------------------------------------


@command(model_app, "info")
def model_info(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False
) -> None:
    """The active model's metadata."""
    app_ctx = ctx_of(ctx)
    row = app_ctx.store.active_model()
    if row is None:
        err.print("[red]error:[/red] no active model yet: run `nijifeed train --starter` (the bundled samples) or "
                  "`nijifeed train --from-folders NEG_DIR POS_DIR`")
        raise typer.Exit(1)
    try:
        model = load_model(Path(row["path"]), int(row["version"]))
    except ModelError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    meta = model.meta.to_dict(with_hashes=False)
    meta.update(version=model.version, path=row["path"])
    if as_json:
        print(json.dumps(meta, indent=2, default=str))
        return
    meta.pop("cv")  # shown below as tables, not as one JSON cell
    table = Table(title=f"model v{model.version} (active)", show_header=False)
    for key, value in meta.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list | tuple) else str(value))
    console.print(table)
    print_training_report(model)


@command(model_app, "list")
def model_list(ctx: typer.Context) -> None:
    """Every trained model, with its cross-validated figures."""
    rows = ctx_of(ctx).store.list_models()
    table = Table(title="models")
    for column in ("version", "active", "starter", "kind", "extractor", "threshold", "CV review", "CV precision",
                   "created"):
        table.add_column(column)
    for row in rows:
        metrics = json.loads(row["metrics_json"] or "{}")
        cv = metrics.get("at_rule", {})
        table.add_row(
            str(row["version"]),
            "●" if row["active"] else "",
            "starter" if metrics.get("starter") else "",
            row["kind"],
            row["extractor"],
            f"{row['threshold']:g}",
            fmt(cv.get("review_rate", float("nan"))),
            fmt(cv.get("precision_2d", float("nan"))),
            row["created_at"],
        )
    console.print(table)


@command(model_app, "use")
def model_use(ctx: typer.Context, version: int) -> None:
    """Make VERSION the active model (roll back or forward)."""
    app_ctx = ctx_of(ctx)
    app_ctx.store.activate_model(version)
    console.print(f"model v{version} is now active")


