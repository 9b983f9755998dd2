"""The X home timeline (API v2) as a Source: pages back to the cursor, and the gaps the API leaves silently.

The transport (auth, base URL, retries, errors) is ``service.sources.x_client``; turning an answer into posts is
``service.sources.x_parse``. This module only walks the pages and watches for gaps.

* **Pages**: newest first, following ``meta.next_token`` back to ``since_id`` (exclusive) for at most
  ``max_pages`` pages of ``max_results`` posts. Every answer is checked by ``x_parse.parse_answer``: a malformed
  page, or one with more posts than ``max_results``, ends the poll with a ``SourceError`` before it is stored
  (pages already stored stay; the cursor only moves when every page was read), a malformed post is skipped.
* **Gaps**: the API silently clamps ``since_id`` to its window (7 days / 800 newest posts). A gap is reported
  (a WARNING on this module's logger with ``extra={"gap": reason}``, ``Page.gap`` set to the reason on the page
  where it was found, and ``XSource.last_gap``) when ``since_id`` is older than 7 days (tweet ids are
  snowflakes: ms = (id >> 22) + 1288834974657), when ``max_pages`` stopped pagination while ``next_token`` was
  still there, or when a poll read as many posts as the window holds (800). A first poll (no ``since_id``) has
  no gap by definition. (The API gives a full last page a ``next_token`` even when nothing follows, so a poll
  whose new posts fill exactly ``max_pages`` pages reports a gap that may not be one: erring on the safe side.)
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from service.sources import Page
from service.sources.read_limit import MIN_PAGE_POSTS, page_size
from service.sources.x_client import XClient
from service.sources.x_parse import QUERY, parse_answer

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger(__name__)

TWITTER_EPOCH_MS = 1288834974657
WINDOW_DAYS = 7.0
WINDOW_POSTS = 800
_ID = re.compile(r"^[0-9]{1,19}$")


def snowflake_ms(tweet_id: str | int) -> int:
    """The creation time (Unix ms) encoded in a tweet id."""
    return (int(tweet_id) >> 22) + TWITTER_EPOCH_MS


class XSource:
    """The authenticated user's home timeline as pages of ``Post`` (see the module docstring)."""

    name = "x"
    bills_reads = True  # the daily read limit applies (``read_limit``)

    def __init__(
        self,
        client: XClient,
        *,
        max_results: int = 100,
        max_pages: int = 8,
        window_posts: int = WINDOW_POSTS,
        first_poll_posts: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``max_results`` posts a page (the API's bounds: 5 to 100), at most ``max_pages`` pages a poll;
        ``window_posts``: how many posts the API keeps reachable (tests shrink it); ``first_poll_posts``: the most
        posts a first poll (no ``since_id``) reads (None: as many as the pages hold)."""
        if not 5 <= max_results <= 100:
            raise ValueError("max_results must be between 5 and 100 (the API's bounds)")
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.client = client
        self.max_results = max_results
        self.max_pages = max_pages
        self.window_posts = window_posts
        self.first_poll_posts = first_poll_posts
        self._clock = clock
        self.last_gap: str | None = None
        #: Whether the last poll stopped because its ``max_reads`` would have been passed.
        self.read_limited = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> XSource:
        """The timeline ``settings`` describe (``x_*`` and ``http_timeout``); ``stop`` ends a backoff wait,
        ``sleep`` replaces it (tests)."""
        client = XClient.from_settings(settings, stop=stop, sleep=sleep)
        return cls(client, max_results=settings.x_max_results, max_pages=settings.x_max_pages,
                   first_poll_posts=settings.x_first_poll_posts)

    def __repr__(self) -> str:
        return f"XSource({self.client!r}, max_results={self.max_results}, max_pages={self.max_pages})"

    def pages(self, since_id: str | None, *, max_reads: int | None = None) -> Iterator[Page]:
        """``max_reads``: the reads this poll may bill at most (the daily limit's remainder, see
        ``read_limit``): each page asks for no more posts than could pass it, and none under 5."""
        self.last_gap = None
        self.read_limited = False
        if since_id is not None and not _ID.match(str(since_id)):
            log.warning("ignoring a since_id that is not a tweet id: %r", since_id)
            since_id = None
        if page_size(self.max_results, max_reads) == 0:
            self.read_limited = True
            return
        self.client.user_id()  # a credential problem fails the poll before any page is asked for
        gap = self._window_gap(since_id)
        token: str | None = None
        count = 0
        seen = 0
        reads = 0
        first_cap = self.first_poll_posts if not since_id else None
        size = self._size(max_reads, reads, first_cap, seen)
        while True:
            body = self.client.home_timeline(max_results=size, fields=QUERY, since_id=since_id,
                                             pagination_token=token)
            answer = parse_answer(body, max_posts=size)  # a malformed page: SourceError, nothing stored
            page = answer.page
            count += 1
            seen += answer.count
            reads += page.reads
            token = answer.next_token
            last = not token
            size = self._size(max_reads, reads, first_cap, seen)
            if token and not last and size == 0:
                last = True
                if page_size(self.max_results, None if max_reads is None else max_reads - reads):
                    log.info("first poll: read the newest %d posts only (NIJIFEED_X_FIRST_POLL_POSTS)", seen)
                else:
                    self.read_limited = True
                    if since_id:
                        gap = gap or (
                            f"stopped after {seen} posts ({reads} reads) by the daily read limit with more pages left "
                            f"before since_id {since_id}: the posts in between are not read (raise "
                            "NIJIFEED_X_DAILY_READ_LIMIT or poll less often)"
                        )
                    else:
                        log.info("first poll: read the newest %d posts only (the daily read limit)", seen)
            if token and not last and count >= self.max_pages:
                last = True
                if since_id:
                    gap = gap or (
                        f"stopped after max_pages={self.max_pages} pages of {self.max_results} with more pages left "
                        f"before since_id {since_id}: the posts in between are not read (raise NIJIFEED_X_MAX_PAGES "
                        "or poll more often)"
                    )
                else:
                    log.info("first poll: read the newest %d pages only (max_pages)", count)
            if last and since_id and not gap and seen >= self.window_posts:
                gap = (
                    f"read {seen} posts since since_id {since_id}, as many as the API's window holds "
                    f"({self.window_posts} newest): older posts may be missing"
                )
            if gap:
                self._report_gap(page, gap)
                gap = None
            yield page
            if last:
                return

    def _size(self, max_reads: int | None, reads: int, first_cap: int | None, seen: int) -> int:
        """Posts the next page asks for: the page size, cut to the reads left and the first poll's cap."""
        size = page_size(self.max_results, None if max_reads is None else max_reads - reads)
        if first_cap is not None and size:
            left = first_cap - seen
            size = min(size, left) if left >= MIN_PAGE_POSTS else 0
        return size

    def _window_gap(self, since_id: str | None) -> str | None:
        if not since_id:
            return None
        age_days = (self._clock() * 1000 - snowflake_ms(since_id)) / 86_400_000
        if age_days > WINDOW_DAYS:
            return (
                f"since_id {since_id} is {age_days:.1f} days old, older than the API's {WINDOW_DAYS:g}-day window: "
                "posts between it and the oldest post returned are missing"
            )
        return None

    def _report_gap(self, page: Page, reason: str) -> None:
        self.last_gap = reason
        page.gap = reason
        log.warning("gap in the X home timeline: %s", reason, extra={"gap": reason, "source": self.name})


__all__ = ["XSource", "snowflake_ms"]
