"""The report as a web page (``render_report_page``) and its plot (``report_svg``), for the web app's /report.

The plot is SVG written directly: a handful of lines and points needs no plotting library, and the page stays
self-contained (no script, no external stylesheet or CDN), so it works offline and under a strict CSP.
"""

from __future__ import annotations

import math
from html import escape

from service.config import Settings
from service.review.report import Estimate, ModelRow, Report, build_report
from service.store import Store

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 64
REVIEW, PRECISION = "#d95f02", "#1b9e77"


def report_svg(store: Store) -> str:
    """Review rate and 2D precision over model versions, cross-validated and measured live, as an SVG."""
    return plot_svg(build_report(store).models)


def plot_svg(models: list[ModelRow]) -> str:
    """The plot for ``models`` (pure: the same rows always give the same bytes)."""
    parts = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
         ' role="img" aria-labelledby="t"><title id="t">Review rate and 2D precision by model version</title>'),
        '<style>text{font:11px sans-serif;fill:#333}.grid{stroke:#ddd}.axis{stroke:#888}</style>',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = _y(tick)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    if not models:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no models yet</text></svg>')
        return "".join(parts)
    xs = [_x(i, len(models)) for i in range(len(models))]
    for x, model in zip(xs, models, strict=True):
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">v{model.version}</text>')
    series = [
        ("review rate (CV)", REVIEW, "4 3", [m.cv_review_rate for m in models]),
        ("review rate (live)", REVIEW, "", [m.live_review_rate for m in models]),
        ("2D precision (CV)", PRECISION, "4 3", [m.cv_precision for m in models]),
        ("2D precision (audit)", PRECISION, "", [m.audit_precision["value"] if m.audit_precision else None
                                                 for m in models]),
    ]
    for x, model in zip(xs, models, strict=True):  # the audit estimate's 95 % interval
        if model.audit_precision:
            low, high = _y(model.audit_precision["low"]), _y(model.audit_precision["high"])
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{low:.1f}" y2="{high:.1f}" stroke="{PRECISION}"'
                         ' stroke-opacity="0.5" stroke-width="6"/>')
    for _name, colour, dash, values in series:
        points = [(x, _y(v)) for x, v in zip(xs, values, strict=True) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"'
                         f' points="{path}"/>')
        for x, y in points:
            fill = "white" if dash else colour
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="{colour}"/>')
    for i, (name, colour, dash, _) in enumerate(series):
        x, y = LEFT + (i % 2) * 260, HEIGHT - 26 + (i // 2) * 16
        parts.append(f'<line x1="{x}" x2="{x + 24}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2"'
                     f' stroke-dasharray="{dash}"/><text x="{x + 30}" y="{y}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _x(i: int, n: int) -> float:
    span = WIDTH - LEFT - RIGHT - 40
    return LEFT + 20 + (span * i / (n - 1) if n > 1 else span / 2)


def _y(value: float) -> float:
    return TOP + (1 - value) * (HEIGHT - TOP - BOTTOM)


def render_report_page(store: Store, settings: Settings) -> str:
    """The whole /report page: the precision estimate, the plot, the model history, the review load."""
    report = build_report(store)
    return _PAGE.format(
        generated=escape(report.generated_at),
        precision=_estimate_html(report.feed_precision, "audited 2D verdicts confirmed 2D"),
        dropped=_estimate_html(report.dropped_correct, "audited not-2D verdicts confirmed not 2D"),
        target=f"{settings.target_precision:.2f}",
        audit_rate=f"{settings.audit_rate:.0%}",
        queue=escape(", ".join(f"{n} {reason}" for reason, n in sorted(report.open_items.items())) or "empty"),
        retrain=_retrain_line(report, settings),
        svg=plot_svg(report.models),
        models=_models_html(report),
        load=_load_html(report),
    )


def _pct(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.1%}"


def _estimate_html(estimate: Estimate, what: str) -> str:
    if not estimate.n:
        return f"<b>—</b> <span>no audit labels yet ({escape(what)})</span>"
    low, high = estimate.interval
    return (f"<b>{_pct(estimate.value)}</b> <span>95 % CI {_pct(low)}–{_pct(high)}, from {estimate.n} "
            f"{escape(what)} ({estimate.successes} of {estimate.n})</span>")


def _retrain_line(report: Report, settings: Settings) -> str:
    if not settings.retrain_after_labels:
        return f"{report.labels_since_model} new labels since the last training; automatic retraining is off"
    return (f"{report.labels_since_model} new labels since the last training; the daemon retrains at "
            f"{settings.retrain_after_labels}")


def _models_html(report: Report) -> str:
    rows = []
    for m in reversed(report.models):
        audit = m.audit_precision
        rows.append(
            "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in (
                f"v{m.version}" + (" ●" if m.active else ""), m.created_at[:16].replace("T", " "),
                f"{m.kind} (starter)" if m.starter else m.kind,
                "—" if m.threshold is None else f"{m.threshold:g}", m.cv_n or "—", _pct(m.cv_review_rate),
                _pct(m.cv_precision), _pct(m.cv_recall), m.live_images, _pct(m.live_review_rate),
                f"{_pct(audit['value'])} (n={audit['n']})" if audit else "—",
            )) + "</tr>"
        )
        if m.not_activated and not m.active:
            rows.append(f'<tr class="note"><td colspan="11">v{m.version} was not activated: '
                        f"{escape('; '.join(m.not_activated))}</td></tr>")
    return "\n".join(rows) or '<tr><td colspan="11">no models yet</td></tr>'


def _load_html(report: Report) -> str:
    return "\n".join(
        f"<tr><td>{escape(d.day)}</td><td>{d.queued}</td><td>{d.labelled}</td><td>{d.auto}</td></tr>"
        for d in reversed(report.load)
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>nijifeed report</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}}
table{{border-collapse:collapse;margin:.5rem 0 1.5rem}}td,th{{padding:.25rem .6rem;border-bottom:1px solid #eee;
text-align:right}}th{{background:#f6f6f6}}td:first-child,th:first-child{{text-align:left}}
.card b{{font-size:1.6rem;margin-right:.5rem}}.card span{{color:#555}}small{{color:#777}}
</style></head><body>
<h1>nijifeed report</h1>
<p class="card">Feed precision: {precision}</p>
<p class="card">Dropped correctly: {dropped}</p>
<p><small>Estimated from audit labels only (a random {audit_rate} of confident verdicts is sent to review), never
from the uncertain band, which is a biased sample. Target precision: {target}. Open review queue: {queue}.
{retrain}.</small></p>
<h2>Review rate and precision by model</h2>
{svg}
<h2>Models</h2>
<table><tr><th>version</th><th>created (UTC)</th><th>kind</th><th>threshold</th><th>CV images</th>
<th>CV review</th><th>CV precision</th><th>CV 2D to feed</th><th>live images</th><th>live review</th>
<th>audit precision</th></tr>
{models}
</table>
<h2>Review load per day</h2>
<table><tr><th>day (UTC)</th><th>queued</th><th>answered</th><th>auto-resolved</th></tr>
{load}
</table>
<p><small>Generated {generated}.</small></p>
</body></html>
"""
