"""``/healthz`` (liveness: the process answers), ``/readyz`` or ``/healthz?ready=1`` (readiness: the store answers
and the last poll is recent), ``/metrics`` (Prometheus text).

A poll is recent when it started less than ``3 × poll_interval + 60 s`` ago: one missed poll is normal (jitter, a
slow cycle); three are not (the daemon is stuck, stopped, or paused by a rate limit or an auth failure). So
readiness fails while only `nijifeed web` runs with no daemon polling: the page would show a stale feed.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from service.sources.read_limit import DailyReadLimit
from service.store import StoreError
from service.web.metrics import CONTENT_TYPE, poll_age_seconds, render_metrics
from service.web.state import WebState

GRACE_S = 60.0


def healthz(request: Request) -> Response:
    if request.query_params.get("ready") not in (None, "", "0", "false"):
        return readyz(request)
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


def readyz(request: Request) -> Response:
    state: WebState = request.app.state.web
    max_age = 3 * state.settings.poll_interval + GRACE_S
    body: dict[str, object] = {"status": "ready", "max_poll_age_s": max_age}
    problems = []
    try:
        age = poll_age_seconds(state.store(), datetime.now(UTC))
        body["store"] = "ok"
    except (sqlite3.Error, StoreError) as exc:
        age = None
        body["store"] = f"error: {exc}"
        problems.append("the store cannot be read")
    else:
        body["last_poll_age_s"] = None if age is None else round(age, 1)
        if age is None:
            problems.append("no poll yet")
        elif age > max_age:
            limit = DailyReadLimit.from_settings(state.settings)
            if limit and limit.paused(state.store()):  # paused by design until 00:00 UTC, not stuck
                body["read_limit"] = f"polling paused until {limit.resets_at().isoformat(timespec='seconds')}"
            else:
                problems.append(f"the last poll started {age:.0f} s ago (more than {max_age:.0f} s)")
    if problems:
        body.update(status="not ready", problems=problems)
    return JSONResponse(body, status_code=503 if problems else 200, headers={"Cache-Control": "no-store"})


def metrics(request: Request) -> Response:
    state: WebState = request.app.state.web
    return PlainTextResponse(render_metrics(state.store(), DailyReadLimit.from_settings(state.settings)), media_type=CONTENT_TYPE,
                             headers={"Cache-Control": "no-store"})
