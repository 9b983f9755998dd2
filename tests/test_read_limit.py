"""The daily read limit (NIJIFEED_X_DAILY_READ_LIMIT) and the first poll's cap (NIJIFEED_X_FIRST_POLL_POSTS), over
HTTP against the X API sandbox, with an injected clock for the UTC day boundary."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from pipelinekit import db, use
from xsandbox import collect, make_source, timeline_requests

from service.config import load_settings
from service.features.builtin import BuiltinExtractor
from service.pipeline.build import CycleRunner
from service.pipeline.build import make_source as source_from_settings
from service.sandbox import Sandbox
from service.sources.read_limit import PAGE_FACTOR, DailyReadLimit, ReadLimitReached, page_size
from service.store import Store
from service.web.metrics import render_metrics


class Clock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


def test_page_size_never_lets_a_page_pass_the_limit():
    assert page_size(100, None) == 100
    assert page_size(100, 10_000) == 100
    assert page_size(100, 200) == 200 // PAGE_FACTOR
    assert page_size(5, 5 * PAGE_FACTOR) == 5
    assert page_size(100, 5 * PAGE_FACTOR - 1) == 0  # under X's lower bound of 5: no request
    assert page_size(100, 0) == 0


def test_first_poll_reads_at_most_first_poll_posts(sandbox):
    source = make_source(sandbox, max_results=100)
    source.first_poll_posts = 12
    pages = collect(source)
    assert sum(len(p.posts) for p in pages) == 12
    assert [r.query["max_results"] for r in timeline_requests(sandbox)] == ["12"]
    assert source.last_gap is None  # a first poll has no gap


def test_first_poll_cap_from_settings_and_asked_for_more(sandbox, monkeypatch, no_proxy):
    monkeypatch.setenv("NIJIFEED_X_BEARER_TOKEN", "user-token")
    use(monkeypatch, sandbox)
    assert source_from_settings(load_settings()).first_poll_posts == 100  # type: ignore[attr-defined]
    source = source_from_settings(load_settings(x_first_poll_posts=800, x_max_results=10))
    pages = collect(source)
    assert sum(len(p.posts) for p in pages) == len(sandbox.posts())  # the whole (small) timeline


def test_a_poll_stops_before_the_page_that_could_pass_its_reads(sandbox):
    source = make_source(sandbox, max_results=10)
    pages = collect_limited(source, max_reads=40)
    assert sum(p.reads for p in pages) <= 40
    asked = [int(r.query["max_results"]) for r in timeline_requests(sandbox)]
    assert asked[0] == 10 and all(n >= 5 for n in asked)
    assert source.read_limited


def collect_limited(source, since_id=None, *, max_reads):
    return list(source.pages(since_id, max_reads=max_reads))


def test_polling_pauses_at_the_limit_and_resumes_the_next_utc_day(service_env, monkeypatch, no_proxy, caplog):
    limit = 60
    clock = Clock(datetime(2026, 3, 14, 23, 50, tzinfo=UTC))
    with Sandbox() as box:
        use(monkeypatch, box)
        settings = load_settings(x_daily_read_limit=limit)
        runner = CycleRunner(settings, BuiltinExtractor(), source_from_settings(settings), clock=clock)
        try:
            with pytest.raises(ReadLimitReached) as first:
                runner(threading.Event(), True)
            store = runner.store()
            day = DailyReadLimit(limit, clock=clock)
            spent = day.reads_today(store)
            assert 0 < spent <= limit  # never passed
            assert limit - spent < 5 * PAGE_FACTOR  # ... and stopped only when not even a page of 5 fits
            assert 500 < first.value.retry_after <= 600  # until 00:00 UTC
            assert "daily read limit reached" in str(first.value)
            conn = db(service_env)
            # the stored work went on: what was read is downloaded and routed
            assert conn.execute("SELECT count(*) FROM media WHERE status = 'pending'").fetchone()[0] == 0
            routed = conn.execute("SELECT count(*) FROM media WHERE status IN ('feed', 'review', 'dropped')")
            assert routed.fetchone()[0] > 0
            cursor = conn.execute("SELECT value FROM kv WHERE key = 'since_id:x'").fetchone()[0]
            assert cursor == box.posts()[0]["id"]  # the cut-short poll still moves the cursor (no re-billing)
            assert all(int(r.query["max_results"]) >= 5 for r in timeline_requests(box))

            # later the same day: no request at all, the same pause
            box.clear_requests()
            box.publish(10)
            clock.set(datetime(2026, 3, 14, 23, 59, 30, tzinfo=UTC))
            with pytest.raises(ReadLimitReached) as again:
                runner(threading.Event(), True)
            assert again.value.retry_after == pytest.approx(30, abs=1)
            assert not [r for r in box.requests if r.endpoint in ("timeline", "me")]
            status = day.status(store)
            assert status["paused"] and status["resets_at"] == "2026-03-15T00:00:00+00:00"
            metrics = render_metrics(store, day)
            assert "nijifeed_api_read_limit_paused 1" in metrics and f"nijifeed_api_daily_read_limit {limit}" in metrics

            # the next UTC day: polling resumes from the cursor, with a fresh budget
            clock.set(datetime(2026, 3, 15, 0, 0, 5, tzinfo=UTC))
            summary = runner(threading.Event(), True)
            assert summary.posts == 10 and summary.read_limit is None
            timeline = timeline_requests(box)
            assert timeline and all(r.query.get("since_id") == cursor for r in timeline)
            assert 0 < day.reads_today(store) <= limit
            assert not day.paused(store)
            assert "nijifeed_api_read_limit_paused 0" in render_metrics(store, day)
        finally:
            runner.close()


def test_status_shows_the_limit(service_env, cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_X_DAILY_READ_LIMIT", "300")
    result = cli("status", "--json")
    assert '"limit": 300' in result.stdout
    assert "daily read limit" in cli("status").stdout
    with Store.open(load_settings().db_path) as store:
        assert "nijifeed_api_daily_read_limit 0" in render_metrics(store)


def test_readiness_while_the_limit_pauses_polling(polled):
    import sqlite3

    from feedkit import web_client

    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if (now - midnight).total_seconds() < 1200:
        pytest.skip("too close to 00:00 UTC for a stale poll of today")
    conn = sqlite3.connect(polled / "nijifeed.sqlite3")
    conn.execute("UPDATE polls SET started_at = ?", (midnight.isoformat(timespec="milliseconds"),))
    conn.commit()
    reads = conn.execute("SELECT sum(reads) FROM polls").fetchone()[0]
    conn.close()
    assert reads > 0
    with web_client(x_daily_read_limit=reads) as client:  # all of today's reads spent: paused, not stuck
        ready = client.get("/readyz")
        assert ready.status_code == 200 and "paused until" in ready.json()["read_limit"], ready.json()
        assert "nijifeed_api_read_limit_paused 1" in client.get("/metrics").text
    with web_client(x_daily_read_limit=reads + 1000) as client:
        assert client.get("/readyz").status_code == 503


def test_the_daemon_logs_the_pause_once_and_keeps_processing(caplog):
    from service.daemon import Daemon
    from service.pipeline.cycle import CycleSummary

    calls: list[bool] = []
    now = [1000.0]

    def cycle(stop, fetch):
        calls.append(fetch)
        if fetch:
            raise ReadLimitReached("daily read limit reached: test", retry_after=600)
        return CycleSummary()

    daemon = Daemon(cycle, interval=60, clock=lambda: now[0])
    caplog.set_level("INFO", logger="service.daemon")
    for _ in range(3):
        daemon.poll()
        now[0] += 60
    assert calls == [True, False, False]  # paused, while the cycles still process the stored work
    said = [r for r in caplog.records if "read limit" in r.getMessage() or "paused" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"
    now[0] += 600
    daemon.poll()
    assert calls[-1] is True  # the next day (the pause's end): polling again
