"""Queries for an image's journey through the timeline pipeline: posts in, media stages, routes, polls.

Mixed into ``Store``. Each method is one transaction, and each stage's write is conditional on the stage before
(``WHERE status = 'pending'``, ``WHERE route IS NULL``), so a stage re-run after a crash is a no-op for work already
done: nothing is processed twice and nothing is lost.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.route import Routed
from service.words import MediaKind

from .base import StoreBase
from .connection import utc_now as _now

if TYPE_CHECKING:
    from service.sources import Post


@dataclass(frozen=True)
class PendingMedia:
    """A media row waiting for its download: what the cycle needs of it."""

    id: int
    media_key: str
    kind: MediaKind
    url: str | None
    preview_url: str | None


@dataclass(frozen=True)
class UnroutedImage:
    """An image downloaded but not routed yet (its cycle died before the verdict)."""

    id: int
    sha256: str


class JourneyQueries(StoreBase):

    # --- posts and media in ---------------------------------------------------------------------------------------

    def add_posts(self, posts: Iterable[Post], *, skip_kinds: frozenset[str] = frozenset()) -> int:
        """Store posts and their media references; return how many media rows are new.

        A media key seen before (a retweet of a known post) is linked to the new post, not added again. Media of
        ``skip_kinds`` (videos, GIFs when their previews are not classified) are recorded as skipped with a reason.
        """
        new_media = 0
        now = _now()
        with self.transaction() as conn:
            for post in posts:
                original = post.original
                conn.execute(
                    "INSERT INTO posts (id, author_id, author_name, author_handle, author_avatar, text, created_at,"
                    " url, raw_json, fetched_at, via, via_id, original_id, original_text, original_url,"
                    " original_created_at, original_author_id, original_author_name, original_author_handle,"
                    " original_author_avatar) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO NOTHING",
                    (post.id, post.author_id, post.author_name, post.author_handle, post.author_avatar, post.text,
                     post.created_at, post.url, json.dumps(post.raw), now, post.via, post.via_id,
                     *((original.id, original.text, original.url, original.created_at, original.author_id,
                        original.author_name, original.author_handle, original.author_avatar)
                       if original is not None else (None,) * 8)),
                )
                for position, ref in enumerate(post.media):
                    skipped = ref.kind in skip_kinds
                    cursor = conn.execute(
                        "INSERT INTO media (media_key, kind, url, preview_url, status, reason, updated_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (media_key) DO NOTHING",
                        (ref.media_key, ref.kind, ref.url, ref.preview_url, "skipped" if skipped else "pending",
                         f"{ref.kind} previews are not classified (NIJIFEED_CLASSIFY_PREVIEWS)" if skipped else None,
                         now),
                    )
                    new_media += cursor.rowcount
                    conn.execute(
                        "INSERT INTO post_media (post_id, media_id, position)"
                        " SELECT ?, id, ? FROM media WHERE media_key = ? ON CONFLICT DO NOTHING",
                        (post.id, position, ref.media_key),
                    )
        return new_media

    def pending_media(self, limit: int = 500) -> list[PendingMedia]:
        """Media still to download, oldest first."""
        rows = self.conn.execute(
            "SELECT id, media_key, kind, url, preview_url FROM media WHERE status = 'pending' ORDER BY id LIMIT ?",
            (limit,),
        )
        return [PendingMedia(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def media_failed(self, media_id: int, reason: str, *, retryable: bool, max_attempts: int) -> str:
        """Count a failed attempt. A retryable failure stays pending until ``max_attempts``; returns the status."""
        with self.transaction() as conn:
            row = conn.execute("SELECT attempts FROM media WHERE id = ?", (media_id,)).fetchone()
            attempts = int(row["attempts"]) + 1
            status = "pending" if retryable and attempts < max_attempts else "failed"
            conn.execute(
                "UPDATE media SET status = ?, reason = ?, attempts = ?, updated_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (status, reason, attempts, _now(), media_id),
            )
        return status

    def media_downloaded(self, media_id: int, image_id: int) -> str:
        """Link the media to its image. If that image was already routed (the same bytes under another key), the
        media takes the image's route at once; returns the media's new status."""
        with self.transaction() as conn:
            route = conn.execute("SELECT route FROM images WHERE id = ?", (image_id,)).fetchone()["route"]
            status = route or "downloaded"
            conn.execute(
                "UPDATE media SET image_id = ?, status = ?, reason = NULL, attempts = attempts + 1, updated_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (image_id, status, _now(), media_id),
            )
        return status

    def set_image_cache(self, image_id: int, path: str, width: int, height: int, nbytes: int) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE images SET cache_path = ?, width = coalesce(width, ?), height = coalesce(height, ?),"
                " bytes = coalesce(bytes, ?) WHERE id = ?",
                (path, width, height, nbytes, image_id),
            )

    def unrouted_images(self, limit: int = 1000) -> list[UnroutedImage]:
        """Images downloaded but not yet routed: the classify stage's work list (after a crash, too)."""
        rows = self.conn.execute(
            "SELECT DISTINCT images.id, images.sha256 FROM images JOIN media ON media.image_id = images.id"
            " WHERE images.route IS NULL AND media.status = 'downloaded' ORDER BY images.id LIMIT ?",
            (limit,),
        )
        return [UnroutedImage(int(r[0]), r[1]) for r in rows]

    def download_again(self, image_id: int, reason: str, *, max_attempts: int) -> int:
        """An unrouted image whose local copy is gone: its media go back to pending, to be fetched again from their
        URLs, unless they have used up ``max_attempts`` (then they fail with ``reason``). Returns how many will be
        fetched again."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE media SET status = 'failed', reason = ?, updated_at = ?"
                " WHERE image_id = ? AND status = 'downloaded' AND attempts >= ?",
                (f"{reason}, after {max_attempts} downloads", _now(), image_id, max_attempts),
            )
            return conn.execute(
                "UPDATE media SET status = 'pending', reason = ?, updated_at = ?"
                " WHERE image_id = ? AND status = 'downloaded'",
                (reason, _now(), image_id),
            ).rowcount

    def image_failed(self, image_id: int, reason: str) -> None:
        """An image that cannot be classified (its cached copy unreadable): its media are failed with the reason."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE media SET status = 'failed', reason = ?, updated_at = ?"
                " WHERE image_id = ? AND status = 'downloaded'",
                (reason, _now(), image_id),
            )

    # --- routing --------------------------------------------------------------------------------------------------

    def route_image(self, model_version: int, item: Routed) -> bool:
        """Record the verdict and send the image (and every media row showing it) where the verdict says.

        Returns False when the image was already routed: the caller's work was a repeat, and nothing changes.
        """
        now = _now()
        with self.transaction() as conn:
            verdict_id = self.add_verdict(
                item.image_id, model_version, item.verdict, item.p_2d, item.margin, item.score, item.audit
            )
            if not self._set_route(conn, item.image_id, item.route, "model", now, verdict_id=verdict_id,
                                   only_from="unrouted"):
                return False
            reason = item.queue_reason
            if reason is not None:
                conn.execute(
                    "INSERT INTO review_queue (image_id, reason, model_version, priority, added_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (image_id) DO NOTHING",
                    (item.image_id, reason, model_version, item.score, now),
                )
        return True

    # --- polls ----------------------------------------------------------------------------------------------------

    def start_poll(self, source: str, *, at: str | None = None) -> int:
        """A new poll row, started now (or ``at``, a store timestamp: a cycle with an injected clock)."""
        with self.transaction() as conn:
            cursor = conn.execute("INSERT INTO polls (source, started_at) VALUES (?, ?)", (source, at or _now()))
            return int(cursor.lastrowid or 0)

    def finish_poll(self, poll_id: int, summary: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE polls SET finished_at = ?, posts = ?, new_media = ?, reads = ?, pages = ?, gap = ?, error = ?,"
                " summary_json = ? WHERE id = ?",
                (_now(), summary.get("posts", 0), summary.get("new_media", 0), summary.get("reads", 0),
                 summary.get("pages", 0), int(bool(summary.get("gap"))), summary.get("error"),
                 json.dumps(summary, default=str), poll_id),
            )

    def add_reads(self, poll_id: int, posts: int, reads: int, new_media: int) -> None:
        """Count a stored page against its poll at once, so reads are billed even if the poll later dies."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE polls SET posts = posts + ?, reads = reads + ?, new_media = new_media + ?, pages = pages + 1"
                " WHERE id = ?",
                (posts, reads, new_media, poll_id),
            )

    def last_poll(self) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM polls ORDER BY id DESC LIMIT 1").fetchone()

    def reads_since(self, since_iso: str) -> int:
        row = self.conn.execute("SELECT coalesce(sum(reads), 0) FROM polls WHERE started_at >= ?", (since_iso,))
        return int(row.fetchone()[0])

    # --- views for the faces --------------------------------------------------------------------------------------

    def status_counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM media GROUP BY status")
        return {str(r[0]): int(r[1]) for r in rows}

    def open_review_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM review_queue WHERE resolved_at IS NULL").fetchone()[0])

    def list_media(self, status: str | None = None, limit: int = 1000) -> list[sqlite3.Row]:
        query = (
            "SELECT media.*, images.sha256, v.verdict, v.p_2d, v.margin, v.model_version FROM media"
            " LEFT JOIN images ON images.id = media.image_id LEFT JOIN verdicts v ON v.id = images.verdict_id"
        )
        args: tuple = ()
        if status:
            query += " WHERE media.status = ?"
            args = (status,)
        return self.conn.execute(query + " ORDER BY media.id DESC LIMIT ?", (*args, limit)).fetchall()

    def media_by_id_or_key(self, ref: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT media.*, images.sha256, images.width, images.height, images.cache_path, images.routed_by,"
            " v.verdict, v.p_2d, v.margin, v.model_version, v.audit FROM media"
            " LEFT JOIN images ON images.id = media.image_id LEFT JOIN verdicts v ON v.id = images.verdict_id"
            " WHERE media.media_key = ? OR CAST(media.id AS TEXT) = ?",
            (ref, ref),
        ).fetchone()

    def posts_of_media(self, media_id: int) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT posts.* FROM posts JOIN post_media pm ON pm.post_id = posts.id WHERE pm.media_id = ?"
            " ORDER BY posts.created_at DESC, posts.id DESC",
            (media_id,),
        ).fetchall()
