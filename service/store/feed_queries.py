"""Queries for the feed's faces (web page, Atom/JSON feeds, metrics), the image cache and the forwarders' outbox.

Mixed into ``Store``. The feed is not a table: it is derived from ``images.route = 'feed'`` (the one route of each
image, whoever set it: the model or a person's label), so a label that moves an image in or out of the feed changes
the feed at once, with nothing to keep in step.

**Entries.** A feed entry is one piece of content, keyed by ``entry_id``: a retweet counts as its original (the key
is the original's id), every other post as itself. So an original that reappears (retweeted by one or more
accounts, or posted and then retweeted) is one entry. Its time ``at`` is when it *first* appeared in the timeline
(the earliest timeline post carrying it), so an entry never moves once shown: paging cursors stay valid and feed
readers see no reordering. ``entered_at`` is when it entered the feed: the later of its post's fetch and its
image's routing, the earliest such pair of the entry. **Each image once**: an image belongs to the entry of the first
post that carried it (``_HOMES``); a later quote or another post with the same bytes does not show it again, and
is listed on that entry as an echo instead. A post whose every image lives elsewhere is no entry of its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from .base import _IN_CHUNK, StoreBase

#: The entry an individual timeline post belongs to (``p`` is the posts row).
ENTRY_KEY = "(CASE WHEN p.via = 'retweet' AND p.via_id IS NOT NULL THEN p.via_id ELSE p.id END)"

#: What an entry shows of a post: not ``raw_json``, which is kept for backfills and would only weigh on each row.
_POST_COLUMNS = ", ".join(
    f"p.{c}"
    for c in ("id", "author_id", "author_name", "author_handle", "author_avatar", "text", "created_at", "url",
              "fetched_at", "via", "via_id", "original_id", "original_text", "original_url", "original_created_at",
              "original_author_id", "original_author_name", "original_author_handle", "original_author_avatar")
)

#: Every (post, image) pair; with ``_IN_FEED``, every (post, feed image) pair.
_PAIRS = (
    "FROM posts p JOIN post_media pm ON pm.post_id = p.id JOIN media m ON m.id = pm.media_id"
    " JOIN images i ON i.id = m.image_id"
)
_IN_FEED = "i.route = 'feed'"

#: Each feed image's home: the entry of the first post that carried it. An image is shown (and forwarded) under
#: its home entry only; later posts carrying it (a quote, a repost, the same bytes under another key) are echoes.
_HOMES = (
    "SELECT image_id, entry_id FROM ("
    f"SELECT i.id AS image_id, {ENTRY_KEY} AS entry_id, row_number() OVER ("
    "PARTITION BY i.id ORDER BY coalesce(p.created_at, p.fetched_at), p.id) AS nth"
    f" {_PAIRS} WHERE {_IN_FEED}) WHERE nth = 1"
)
#: Every (post, feed image) pair of the image's home entry.
_HOME_PAIRS = f"{_PAIRS} JOIN ({_HOMES}) home ON home.image_id = i.id AND home.entry_id = {ENTRY_KEY}"

#: One row per entry: its key, first appearance and feed entry time.
_ENTRIES = (
    f"SELECT {ENTRY_KEY} AS entry_id, min(coalesce(p.created_at, p.fetched_at)) AS at,"
    " min(max(coalesce(p.fetched_at, ''), coalesce(i.routed_at, ''))) AS entered_at"
    f" {_HOME_PAIRS} WHERE {_IN_FEED} GROUP BY entry_id"
)


class FeedQueries(StoreBase):

    # --- feed entries ---------------------------------------------------------------------------------------------

    def feed_entry_keys(
        self, *, limit: int, before: tuple[str, str] | None = None, since: str | None = None
    ) -> list[sqlite3.Row]:
        """(entry_id, at, entered_at) newest first: one page of the feed. ``before`` is the (at, entry_id) of the
        last entry of the previous page (a keyset cursor: stable while new entries arrive on top); ``since`` keeps
        entries that first appeared at or after that time."""
        having, args = [], []
        if since:
            having.append("at >= ?")
            args.append(since)
        if before:
            having.append("(at < ? OR (at = ? AND entry_id < ?))")
            args += [before[0], before[0], before[1]]
        where = f" WHERE {' AND '.join(having)}" if having else ""
        return self.conn.execute(
            f"SELECT * FROM ({_ENTRIES}){where} ORDER BY at DESC, entry_id DESC LIMIT ?", (*args, limit)
        ).fetchall()

    def feed_entry_key_of_post(self, post_id: str) -> sqlite3.Row | None:
        """The entry a stored post belongs to, if that entry is (still) in the feed."""
        return self.conn.execute(
            f"SELECT * FROM ({_ENTRIES}) WHERE entry_id = (SELECT {ENTRY_KEY} FROM posts p WHERE p.id = ?)",
            (post_id,),
        ).fetchone()

    def feed_entry_rows(self, entry_ids: Sequence[str]) -> list[sqlite3.Row]:
        """Every (post, feed image) pair of these entries, earliest post first, images in their post's order."""
        rows: list[sqlite3.Row] = []
        for start in range(0, len(entry_ids), _IN_CHUNK):
            chunk = tuple(entry_ids[start : start + _IN_CHUNK])
            rows += self.conn.execute(
                f"SELECT {ENTRY_KEY} AS entry_id, {_POST_COLUMNS}, m.media_key, m.url AS media_url, m.preview_url,"
                " pm.position,"
                " i.sha256, i.width, i.height, i.bytes, i.routed_by, v.p_2d, v.model_version"
                f" {_HOME_PAIRS} LEFT JOIN verdicts v ON v.id = i.verdict_id"
                f" WHERE {_IN_FEED} AND {ENTRY_KEY} IN ({','.join('?' * len(chunk))})"
                " ORDER BY coalesce(p.created_at, p.fetched_at), p.id, pm.position",
                chunk,
            ).fetchall()
        return rows

    def feed_echo_rows(self, entry_ids: Sequence[str]) -> list[sqlite3.Row]:
        """Later posts that carry these entries' images from another entry (a quote, a repost of a quote, the same
        bytes under another key): (home entry_id, the post's id, author_handle, url, via), earliest first."""
        rows: list[sqlite3.Row] = []
        for start in range(0, len(entry_ids), _IN_CHUNK):
            chunk = tuple(entry_ids[start : start + _IN_CHUNK])
            rows += self.conn.execute(
                f"SELECT DISTINCT home.entry_id AS entry_id, p.id, p.author_handle, p.url, p.via,"
                " coalesce(p.created_at, p.fetched_at) AS at"
                f" {_PAIRS} JOIN ({_HOMES}) home ON home.image_id = i.id AND home.entry_id != {ENTRY_KEY}"
                f" WHERE {_IN_FEED} AND home.entry_id IN ({','.join('?' * len(chunk))}) ORDER BY at, p.id",
                chunk,
            ).fetchall()
        return rows

    def newest_feed_images(self, entries: int) -> set[str]:
        """sha256 of the images of the newest ``entries`` feed entries: the ones the cache always keeps."""
        if entries <= 0:
            return set()
        keys = [row["entry_id"] for row in self.feed_entry_keys(limit=entries)]
        return {row["sha256"] for row in self.feed_entry_rows(keys)}

    # --- the image cache ------------------------------------------------------------------------------------------

    def image_for_serving(self, sha256: str) -> sqlite3.Row | None:
        """A known image and one URL it was fetched from (the fallback when its cached copy was evicted)."""
        return self.conn.execute(
            "SELECT i.*, (SELECT coalesce(m.url, m.preview_url) FROM media m WHERE m.image_id = i.id"
            " ORDER BY m.id LIMIT 1) AS media_url FROM images i WHERE i.sha256 = ?",
            (sha256.lower(),),
        ).fetchone()

    def touch_images(self, served: dict[str, str]) -> None:
        """Record when images were last served (sha256 → time), in one transaction, for LRU eviction."""
        if not served:
            return
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE images SET last_served_at = ? WHERE sha256 = ?"
                " AND (last_served_at IS NULL OR last_served_at < ?)",
                [(at, sha, at) for sha, at in served.items()],
            )

    def eviction_candidates(self, keep: set[str]) -> list[sqlite3.Row]:
        """Cached images that may be evicted, least recently used first: routed (the pipeline no longer needs the
        bytes), not waiting in the review queue, and not in ``keep``."""
        rows = self.conn.execute(
            "SELECT i.id, i.sha256 FROM images i WHERE i.cache_path IS NOT NULL AND i.route IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM review_queue q WHERE q.image_id = i.id AND q.resolved_at IS NULL)"
            " ORDER BY coalesce(i.last_served_at, i.routed_at, i.first_seen), i.id"
        ).fetchall()
        return [row for row in rows if row["sha256"] not in keep]

    def image_evicted(self, image_id: int) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE images SET cache_path = NULL WHERE id = ?", (image_id,))

    # --- the forwarders' outbox -----------------------------------------------------------------------------------

    def forwarder_enabled_since(self, forwarder: str, enabled: bool, now: str) -> str | None:
        """When ``forwarder`` was switched on (recorded now if it just was); None, and forgotten, when it is off,
        so switching it on again later does not forward what entered the feed in between."""
        key = f"forward:enabled_at:{forwarder}"
        with self.transaction() as conn:
            if not enabled:
                conn.execute("DELETE FROM kv WHERE key = ?", (key,))
                return None
            conn.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, now))
            return str(conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()[0])

    def entries_entered_since(self, since: str) -> list[sqlite3.Row]:
        """(entry_id, at, entered_at) of feed entries that entered the feed at or after ``since``, oldest first."""
        return self.conn.execute(
            f"SELECT * FROM ({_ENTRIES}) WHERE entered_at >= ? ORDER BY entered_at, entry_id", (since,)
        ).fetchall()

    def forwarded_entry_ids(self, forwarder: str) -> set[str]:
        """Entries with an outbox row for ``forwarder`` under any of their posts (an entry reached through two
        retweets is forwarded once). One pass over the forwarder's rows, whatever the size of the feed."""
        rows = self.conn.execute(
            f"SELECT DISTINCT {ENTRY_KEY} FROM outbox o JOIN posts p ON p.id = o.post_id WHERE o.forwarder = ?",
            (forwarder,),
        )
        return {str(r[0]) for r in rows}

    def outbox_add(self, post_id: str, forwarder: str, now: str) -> bool:
        with self.transaction() as conn:
            return bool(conn.execute(
                "INSERT INTO outbox (post_id, forwarder, status, next_attempt_at, created_at)"
                " VALUES (?, ?, 'pending', ?, ?) ON CONFLICT (post_id, forwarder) DO NOTHING",
                (post_id, forwarder, now, now),
            ).rowcount)

    def outbox_due(self, forwarders: Sequence[str], now: str, limit: int = 100) -> list[sqlite3.Row]:
        """Rows to deliver now: pending ones whose time has come, and 'sending' ones whose lease ran out (their
        sender died mid-send)."""
        if not forwarders:
            return []
        marks = ",".join("?" * len(forwarders))
        return self.conn.execute(
            f"SELECT * FROM outbox WHERE status IN ('pending', 'sending') AND next_attempt_at <= ?"
            f" AND forwarder IN ({marks}) ORDER BY next_attempt_at, id LIMIT ?",
            (now, *forwarders, limit),
        ).fetchall()

    def outbox_claim(self, row_id: int, status: str, now: str, lease_until: str) -> bool:
        """Take a due row for sending (status 'sending' until ``lease_until``). False when another process took
        it first: the conditional update is the lock."""
        with self.transaction() as conn:
            return bool(conn.execute(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1, next_attempt_at = ?"
                " WHERE id = ? AND status = ? AND next_attempt_at <= ?",
                (lease_until, row_id, status, now),
            ).rowcount)

    def outbox_done(self, row_id: int, now: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, last_error = NULL WHERE id = ?",
                (now, row_id),
            )

    def outbox_retry(self, row_id: int, error: str, next_attempt_at: str | None) -> None:
        """A failed try: back to 'pending' until ``next_attempt_at``, or 'failed' for good when it is None."""
        with self.transaction() as conn:
            if next_attempt_at is None:
                conn.execute("UPDATE outbox SET status = 'failed', last_error = ? WHERE id = ?", (error, row_id))
            else:
                conn.execute(
                    "UPDATE outbox SET status = 'pending', last_error = ?, next_attempt_at = ? WHERE id = ?",
                    (error, next_attempt_at, row_id),
                )

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        rows = self.conn.execute("SELECT forwarder, status, count(*) FROM outbox GROUP BY forwarder, status")
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    # --- metrics --------------------------------------------------------------------------------------------------

    def image_route_counts(self) -> dict[tuple[str, str], int]:
        """(route, routed_by) → images; route 'unrouted' for images not yet classified."""
        rows = self.conn.execute(
            "SELECT coalesce(route, 'unrouted'), coalesce(routed_by, 'none'), count(*) FROM images GROUP BY 1, 2"
        )
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def verdict_counts(self) -> dict[str, int]:
        """Verdicts of the images' current verdicts (what routed them, or would have, for labelled ones)."""
        rows = self.conn.execute(
            "SELECT v.verdict, count(*) FROM images i JOIN verdicts v ON v.id = i.verdict_id GROUP BY v.verdict"
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def failure_reasons(self) -> list[str]:
        """The reason of every failed media row (the metrics face groups them into a few kinds)."""
        return [str(r[0] or "") for r in self.conn.execute("SELECT reason FROM media WHERE status = 'failed'")]

    def poll_totals(self) -> sqlite3.Row:
        return self.conn.execute(
            "SELECT count(*) AS polls, coalesce(sum(reads), 0) AS reads, coalesce(sum(posts), 0) AS posts,"
            " coalesce(sum(error IS NOT NULL), 0) AS errors, coalesce(sum(gap), 0) AS gaps FROM polls"
        ).fetchone()

    def cached_bytes(self) -> int:
        return int(self.conn.execute(
            "SELECT coalesce(sum(bytes), 0) FROM images WHERE cache_path IS NOT NULL"
        ).fetchone()[0])
