"""The daily spending limit on X API reads (``NIJIFEED_X_DAILY_READ_LIMIT``): posts read per UTC day, the unit X
bills (a page's posts plus the referenced posts its ``includes`` bring, as ``Page.reads`` counts them).

The store already counts the reads of every stored page against its poll (``polls.reads``, stamped with the poll's
start), so the reads of a UTC day are ``store.reads_since(<that day, 00:00 UTC>)``, whichever process made them.

**Never passed.** A page of ``n`` posts may bill up to ``n * (1 + MAX_REFERENCED_PER_POST)`` reads (the parser
refuses a page with more referenced posts than that), so a page asks for at most
``min(max_results, remaining // PAGE_FACTOR)`` posts; when that is under 5 (X's lower bound for ``max_results``),
no request is made: polling pauses until the next UTC day while stored work goes on. Away from the limit pages are
full; only the last few reads of a day may stay unused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from service.sources import Page, SourceError
from service.sources.x_parse import MAX_REFERENCED_PER_POST

if TYPE_CHECKING:
    from service.config import Settings
    from service.store import Store

#: The most reads one post of a page may bill: itself and its referenced posts.
PAGE_FACTOR = 1 + MAX_REFERENCED_PER_POST
#: X's lower bound for ``max_results``: a smaller page cannot be asked for.
MIN_PAGE_POSTS = 5


class ReadLimitedSource(Protocol):
    """A source whose reads are billed (``bills_reads = True``): its polls take the reads left today."""

    name: str

    def pages(self, since_id: str | None, *, max_reads: int | None = None) -> Iterator[Page]: ...


class ReadLimitReached(SourceError):
    """Polling pauses until the next UTC day (``retry_after``, seconds): the next page could pass the limit."""


def page_size(max_results: int, remaining: int | None) -> int:
    """Posts to ask for in the next page with ``remaining`` reads left today (None: no limit); 0: ask for none."""
    if remaining is None:
        return max_results
    size = min(max_results, max(0, remaining) // PAGE_FACTOR)
    return size if size >= MIN_PAGE_POSTS else 0


class DailyReadLimit:
    """``limit`` reads per UTC day (0: none), the day told by ``clock`` (Unix seconds; tests inject one)."""

    def __init__(self, limit: int, *, clock: Callable[[], float] = time.time) -> None:
        self.limit = max(0, int(limit))
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], float] = time.time) -> DailyReadLimit:
        return cls(settings.x_daily_read_limit, clock=clock)

    def __bool__(self) -> bool:
        return self.limit > 0

    def day_start(self) -> datetime:
        now = datetime.fromtimestamp(self.clock(), UTC)
        return now.replace(hour=0, minute=0, second=0, microsecond=0)

    def resets_at(self) -> datetime:
        """The next 00:00 UTC."""
        return self.day_start() + timedelta(days=1)

    def seconds_to_reset(self) -> float:
        return max(1.0, self.resets_at().timestamp() - self.clock())

    def reads_today(self, store: Store) -> int:
        return store.reads_since(self.day_start().strftime("%Y-%m-%dT%H:%M:%S"))

    def remaining(self, store: Store) -> int | None:
        """Reads left today (None: no limit)."""
        return max(0, self.limit - self.reads_today(store)) if self else None

    def paused(self, store: Store) -> bool:
        """Whether the next poll would ask for nothing (the limit is as good as reached)."""
        return bool(self) and page_size(100, self.remaining(store)) == 0

    def reached(self, store: Store) -> ReadLimitReached:
        reads = self.reads_today(store)
        wait = self.seconds_to_reset()
        return ReadLimitReached(
            f"daily read limit reached: {reads} of NIJIFEED_X_DAILY_READ_LIMIT={self.limit} posts read today (UTC); "
            f"polling paused until {self.resets_at():%Y-%m-%d %H:%M} UTC (in {wait:.0f} s), stored work goes on",
            retry_after=wait,
        )

    def status(self, store: Store) -> dict[str, Any]:
        """What `status`, `/metrics` and `doctor` show."""
        if not self:
            return {"limit": 0, "reads_today": self.reads_today(store), "remaining": None, "paused": False,
                    "resets_at": None}
        return {"limit": self.limit, "reads_today": self.reads_today(store), "remaining": self.remaining(store),
                "paused": self.paused(store), "resets_at": self.resets_at().isoformat(timespec="seconds")}


__all__ = ["MIN_PAGE_POSTS", "PAGE_FACTOR", "DailyReadLimit", "ReadLimitReached", "ReadLimitedSource", "page_size"]
