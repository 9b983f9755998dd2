"""The long-running service: a scheduler, a lock, signals. The work itself is ``pipeline.Cycle``.

One poll at a time (APScheduler ``max_instances=1``, missed runs coalesced), jitter on the interval so many
installs do not hit the API in step. SIGTERM/SIGINT set a stop event that the cycle checks between batches, so
the daemon exits within seconds with everything done so far committed. A rate limit or an auth failure pauses
polling (downloads and classification of what is already stored go on) instead of hammering the API.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from service.errors import NijifeedError
from service.pipeline.cycle import CycleSummary
from service.sources import SourceError
from service.sources.read_limit import ReadLimitReached

log = logging.getLogger(__name__)

#: After an authentication or permission error, wait this long before asking the API again (no hot loop).
FATAL_BACKOFF_S = 3600.0


class AlreadyRunning(NijifeedError):
    pass


@contextmanager
def single_instance(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` for the daemon's life; a second daemon on the same data dir
    fails at once. The kernel drops the lock when the process dies, even by SIGKILL, so no stale lock remains."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the daemon's life, closed below
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunning(f"another nijifeed daemon (pid {holder}) is running on {lock_path.parent}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class Daemon:
    """Runs ``run_cycle(stop, fetch)`` on a schedule until stopped.

    ``run_cycle`` returns the cycle's summary, or raises ``SourceError`` (the cycle has still processed what was
    already stored). ``fetch=False`` asks it to skip the source while a rate limit or auth pause lasts.
    """

    def __init__(
        self,
        run_cycle: Callable[[threading.Event, bool], CycleSummary],
        *,
        interval: float,
        jitter: float = 0.1,
        max_cycles: int | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_cycle = run_cycle
        self.interval = interval
        self.jitter = jitter
        self.clock = clock
        self.stop = stop or threading.Event()  # shared with the source, so its backoff sleeps end on shutdown
        self.paused_until = 0.0
        self.pause_quiet = False  # a daily read limit pause is logged once, not at every cycle it lasts
        self.cycles = 0
        self.max_cycles = max_cycles  # stop after this many cycles (the demo's --cycles); None runs until stopped
        self.scheduler = BackgroundScheduler(job_defaults={"max_instances": 1, "coalesce": True})

    def poll(self) -> None:
        """One scheduled run. Never raises: the scheduler must keep its schedule whatever one cycle meets."""
        if self.stop.is_set():
            return
        fetch = self.clock() >= self.paused_until
        if not fetch:
            log.log(logging.DEBUG if self.pause_quiet else logging.INFO,
                    "polling paused for %.0f s more; processing stored work only", self.paused_until - self.clock())
        try:
            summary = self.run_cycle(self.stop, fetch)
            log.info("cycle: %s", summary.line())
        except SourceError as exc:
            wait = FATAL_BACKOFF_S if exc.fatal else (exc.retry_after or self.interval)
            self.paused_until = self.clock() + wait
            self.pause_quiet = isinstance(exc, ReadLimitReached)
            level = logging.ERROR if exc.fatal else logging.WARNING
            if self.pause_quiet:
                log.warning("%s; next poll in %.0f s", exc, wait)
            else:
                log.log(level, "poll failed: %s; next poll in %.0f s", exc, wait)
        except Exception:  # noqa: BLE001 - logged with its traceback; the next cycle resumes from the store
            log.exception("cycle failed; the next one resumes from the store")
        finally:
            self.cycles += 1
            if self.max_cycles is not None and self.cycles >= self.max_cycles:
                self.stop.set()

    def every(self, seconds: float, job: Callable[[], object], name: str) -> None:
        """Run ``job`` every ``seconds`` beside the polls (forwarding, retraining); its failures are logged."""

        def run() -> None:
            if self.stop.is_set():
                return
            try:
                job()
            except Exception:  # noqa: BLE001 - one failed run must not end the schedule
                log.exception("%s failed; it runs again in %.0f s", name, seconds)

        self.scheduler.add_job(run, IntervalTrigger(seconds=seconds), id=name, name=name)

    def start(self) -> None:
        trigger = IntervalTrigger(seconds=self.interval, jitter=max(0, int(self.interval * self.jitter)) or None)
        self.scheduler.add_job(self.poll, trigger, id="poll", next_run_time=_now())
        self.scheduler.start()

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.request_stop())

    def request_stop(self) -> None:
        if not self.stop.is_set():
            log.info("stopping: finishing the current batch")
        self.stop.set()

    def wait(self) -> None:
        """Block until stopped, then let a running cycle checkpoint and shut the scheduler down."""
        while not self.stop.wait(0.5):
            pass
        self.scheduler.shutdown(wait=True)
        log.info("stopped")


def _now():
    from datetime import datetime

    return datetime.now(UTC)
