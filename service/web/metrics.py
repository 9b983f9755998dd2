"""The store's figures in Prometheus' text exposition format (version 0.0.4), written by hand: a few gauges and
counters read from the store at scrape time, so any process (the daemon's web thread or `nijifeed web`) tells the
same story."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from service.feed.times import parse_time
from service.sources.read_limit import DailyReadLimit
from service.store import Store
from service.words import MEDIA_STATUSES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float]


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def reason_kind(reason: str) -> str:
    """A failure reason as a small closed set of label values ("HTTP 404 after 3 attempts" → "http_404")."""
    text = re.split(r"[(:]| after ", reason.lower(), maxsplit=1)[0]
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")[:40] or "unknown"


def render_metrics(store: Store, read_limit: DailyReadLimit | None = None) -> str:
    """The exposition; ``read_limit``: the daily read limit to report (``NIJIFEED_X_DAILY_READ_LIMIT``)."""
    out = Exposition()
    media = store.status_counts()
    out.add("nijifeed_media", "gauge", "Media references by pipeline status.",
            [({"status": s}, media.get(s, 0)) for s in sorted(set(MEDIA_STATUSES) | set(media))])
    out.add("nijifeed_images", "gauge", "Distinct images by route and by what routed them (model or label).",
            [({"route": r, "routed_by": b}, n) for (r, b), n in sorted(store.image_route_counts().items())])
    verdicts = store.verdict_counts()
    out.add("nijifeed_image_verdicts", "gauge", "Distinct images by the verdict of the model that routed them.",
            [({"verdict": v}, verdicts.get(v, 0)) for v in ("2d", "not2d", "uncertain")])
    out.add("nijifeed_review_queue_size", "gauge", "Images waiting for a person's label.",
            [({}, store.open_review_count())])
    failures = Counter(reason_kind(r) for r in store.failure_reasons())
    totals = store.poll_totals()
    failures["poll_error"] = int(totals["errors"])
    out.add("nijifeed_failures", "gauge", "Failed media by reason, and polls that ended in an error.",
            [({"reason": k}, n) for k, n in sorted(failures.items())])
    out.add("nijifeed_polls_total", "counter", "Polls of the source.", [({}, totals["polls"])])
    out.add("nijifeed_api_reads_total", "counter", "Posts read from the X API (billed per post).",
            [({}, totals["reads"])])
    limit = (read_limit or DailyReadLimit(0)).status(store)
    out.add("nijifeed_api_reads_today", "gauge", "Posts read from the X API since 00:00 UTC.",
            [({}, limit["reads_today"])])
    out.add("nijifeed_api_daily_read_limit", "gauge", "NIJIFEED_X_DAILY_READ_LIMIT (0: no limit).",
            [({}, limit["limit"])])
    out.add("nijifeed_api_read_limit_paused", "gauge", "1 while polling is paused by the daily read limit.",
            [({}, int(limit["paused"]))])
    out.add("nijifeed_timeline_gaps_total", "counter", "Polls that found a gap in the timeline.",
            [({}, totals["gaps"])])
    last = store.last_poll()
    duration = _seconds_between(last["started_at"], last["finished_at"]) if last else None
    out.add("nijifeed_last_poll_duration_seconds", "gauge", "How long the last finished poll took.",
            [({}, duration)] if duration is not None else [])
    out.add("nijifeed_last_poll_timestamp_seconds", "gauge", "When the last poll started (Unix time).",
            [({}, parse_time(last["started_at"]).timestamp())] if last else [])
    out.add("nijifeed_outbox", "gauge", "Forwards by forwarder and status.",
            [({"forwarder": f, "status": s}, n) for (f, s), n in sorted(store.outbox_counts().items())])
    out.add("nijifeed_cache_bytes", "gauge", "Bytes of cached original images.", [({}, store.cached_bytes())])
    return out.text()


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return max(0.0, (parse_time(end) - parse_time(start)).total_seconds())


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | int | None) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(float(value))


def poll_age_seconds(store: Store, now: datetime) -> float | None:
    """Seconds since the last poll started; None when there was none."""
    last = store.last_poll()
    return (now - parse_time(last["started_at"])).total_seconds() if last else None
