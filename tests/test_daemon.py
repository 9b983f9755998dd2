"""The daemon as a real process: scheduling, the single-instance lock, SIGTERM, and SIGKILL mid-cycle."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from pipelinekit import assert_routed_exactly_once, db, shown_keys
from xsandbox import BEARER_TOKEN

from service.daemon import AlreadyRunning, Daemon, single_instance
from service.pipeline.cycle import CycleSummary
from service.sandbox import Sandbox
from service.sources import SourceError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daemon_env(data_dir, sandbox: Sandbox, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIJIFEED_")}
    env.update(
        NIJIFEED_DATA_DIR=str(data_dir),
        NIJIFEED_X_API_BASE_URL=sandbox.url,
        NIJIFEED_X_BEARER_TOKEN=BEARER_TOKEN,
        NIJIFEED_X_MAX_RESULTS="10",
        NIJIFEED_POLL_INTERVAL="1",
        NIJIFEED_AUDIT_RATE="0.1",
        NIJIFEED_BATCH_SIZE="4",
        NIJIFEED_DOWNLOAD_CONCURRENCY="2",
        NIJIFEED_WEB_PORT=str(free_port()),
        NO_PROXY="127.0.0.1",
        **extra,
    )
    return env


def start(env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "service", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for(predicate, timeout: float = 60.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def count(data_dir, query: str) -> int:
    try:
        conn = sqlite3.connect(data_dir / "nijifeed.sqlite3", timeout=5)
        try:
            return int(conn.execute(query).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created or not migrated yet
        return 0


ROUTED = "SELECT count(*) FROM images WHERE route IS NOT NULL"
OPEN_WORK = "SELECT count(*) FROM media WHERE status IN ('pending', 'downloaded')"


@pytest.mark.slow
def test_sigkill_mid_cycle_then_restart_routes_every_image_exactly_once(trained, no_proxy):
    with Sandbox() as sandbox:
        sandbox.inject("slow", times=None, target="media", seconds=0.4)  # a long cycle to kill in the middle
        env = daemon_env(trained, sandbox)
        first = start(env)
        try:
            wait_for(lambda: count(trained, ROUTED) >= 3)
            assert count(trained, OPEN_WORK) > 0, "killed too late to test anything"
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        sandbox.clear_faults()
        second = start(env)
        try:
            wait_for(lambda: count(trained, "SELECT count(*) FROM polls WHERE finished_at IS NOT NULL") >= 2
                     and count(trained, OPEN_WORK) == 0)
        finally:
            second.send_signal(signal.SIGTERM)
            output, _ = second.communicate(timeout=60)
        assert second.returncode == 0, output
        conn = db(trained)
        media = {row["media_key"]: row["status"] for row in conn.execute("SELECT media_key, status FROM media")}
        assert set(media) == shown_keys(sandbox)
        assert set(media.values()) <= {"feed", "review", "dropped", "skipped"}
        assert_routed_exactly_once(conn)
        posts = conn.execute("SELECT count(*) FROM posts").fetchone()[0]
        assert posts == len(sandbox.posts())


@pytest.mark.slow
def test_sigterm_stops_within_seconds_and_a_second_daemon_is_refused(trained, no_proxy):
    with Sandbox() as sandbox:
        env = daemon_env(trained, sandbox)
        daemon = start(env)
        try:
            wait_for(lambda: count(trained, ROUTED) >= 1)
            web = f"http://127.0.0.1:{env['NIJIFEED_WEB_PORT']}"
            assert httpx.get(f"{web}/healthz", timeout=5).status_code == 200  # the daemon serves the feed too
            assert httpx.get(f"{web}/feed.json", timeout=5).json()["version"].startswith("https://jsonfeed.org")
            second = subprocess.run(
                [sys.executable, "-m", "service", "run"], env=env, capture_output=True, text=True, timeout=60
            )
            assert second.returncode == 1
            assert "another nijifeed daemon" in second.stderr
            stopped_at = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            output, _ = daemon.communicate(timeout=60)
            assert time.monotonic() - stopped_at < 30  # within seconds: nothing hangs on shutdown
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert daemon.returncode == 0, output
        assert "cycle:" in output
        assert BEARER_TOKEN not in output


def test_lock_is_exclusive_and_released(tmp_path):
    lock = tmp_path / "daemon.lock"
    with single_instance(lock), pytest.raises(AlreadyRunning, match=str(os.getpid())), single_instance(lock):
        pass
    with single_instance(lock):  # released on exit
        pass


def test_rate_limit_pauses_polling_but_not_processing():
    calls: list[bool] = []
    now = [1000.0]

    def cycle(stop, fetch):
        calls.append(fetch)
        if fetch and len(calls) == 1:
            raise SourceError("rate limited", retry_after=60)
        return CycleSummary()

    daemon = Daemon(cycle, interval=10, clock=lambda: now[0])
    daemon.poll()
    daemon.poll()  # within the 60 s pause: stored work only
    now[0] += 61
    daemon.poll()
    assert calls == [True, False, True]


def test_auth_failure_backs_off_for_long():
    calls: list[bool] = []
    now = [0.0]

    def cycle(stop, fetch):
        calls.append(fetch)
        raise SourceError("401 Unauthorized", fatal=True)

    daemon = Daemon(cycle, interval=10, clock=lambda: now[0])
    daemon.poll()
    now[0] += 600
    daemon.poll()
    assert calls == [True, False]  # no hot loop against the API


def test_max_cycles_stops_the_daemon():
    daemon = Daemon(lambda stop, fetch: CycleSummary(), interval=10, max_cycles=2)
    daemon.poll()
    assert not daemon.stop.is_set()
    daemon.poll()
    assert daemon.stop.is_set()
