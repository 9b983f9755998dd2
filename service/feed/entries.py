"""Feed entries: the store's (post, feed image) rows grouped into what a reader sees.

One entry per piece of content (see ``service.store.feed_queries``): a retweet is shown as its original, with the
original's author and text and the accounts that retweeted it in ``reposted_by``; posting and retweeting the same
original, or two accounts retweeting it, give one entry. Only images routed to the feed are shown, each once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from service.errors import InputError
from service.store import Store


@dataclass
class FeedImage:
    media_key: str
    url: str | None  # where it was fetched from (the original host)
    sha256: str  # the local cache's key: /img/<sha256>, /thumb/<sha256>
    width: int | None
    height: int | None
    bytes: int | None
    p_2d: float | None  # the model's probability of 2D
    model_version: int | None  # the model that judged it
    routed_by: str | None  # "model", or "label" when a person put it in the feed


@dataclass
class Echo:
    """A later post that carries an image of the entry (shown once, on the entry that first had it)."""

    post_id: str
    author_handle: str | None
    url: str | None
    via: str | None  # "quote" (quoted by), "retweet" (reposted by), or None (posted again)


@dataclass
class FeedEntry:
    id: str  # the content's post id: a retweet's original, else the post itself
    post_id: str  # the timeline post through which it first appeared
    url: str | None
    text: str | None
    created_at: str | None  # when it first appeared in the timeline: the feed's order
    entered_at: str | None  # when it entered the feed
    author_name: str | None
    author_handle: str | None
    author_avatar: str | None
    via: str | None  # "retweet" or "quote" when the media came through another post
    reposted_by: list[str] = field(default_factory=list)  # handles that retweeted it into the timeline
    images: list[FeedImage] = field(default_factory=list)
    echoes: list[Echo] = field(default_factory=list)  # later posts that carry its images (quotes, reposts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def echo_line(self) -> str:
        """Who else carried its pictures, in words: "quoted by @a, @b · reposted by @c · posted again by @d"."""
        groups: dict[str, list[str]] = {}
        for echo in self.echoes:
            how = {"quote": "quoted by", "retweet": "reposted by"}.get(echo.via or "", "posted again by")
            handle = f"@{echo.author_handle}" if echo.author_handle else "someone"
            if handle not in groups.setdefault(how, []):
                groups[how].append(handle)
        return " · ".join(f"{how} {', '.join(handles)}" for how, handles in groups.items())


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the (time, id) of its last entry. Opaque to clients (``?before=``)."""

    at: str
    entry_id: str

    def encode(self) -> str:
        raw = json.dumps([self.at, self.entry_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises ``InputError`` for anything that is not a cursor this code made: a JSON list of two strings that
        SQLite can bind (no lone surrogates), base64url-encoded. Nothing else escapes (tests/test_cursor_fuzz.py)."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            value = json.loads(raw)
        except (binascii.Error, ValueError, TypeError, RecursionError):  # RecursionError: deeply nested JSON
            raise InputError(f"not a feed cursor: {text[:40]!r}") from None
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value)):
            raise InputError(f"not a feed cursor: {text[:40]!r}")
        at, entry_id = value
        try:
            at.encode(), entry_id.encode()
        except UnicodeEncodeError:  # "\ud800" in the JSON: a str that no database or page can hold
            raise InputError(f"not a feed cursor: {text[:40]!r}") from None
        return cls(at, entry_id)


@dataclass
class FeedPage:
    entries: list[FeedEntry]
    next: Cursor | None  # None on the last page


def feed_page(store: Store, *, limit: int = 50, before: Cursor | None = None, since: str | None = None) -> FeedPage:
    """One page of the feed, newest first, and the cursor of the next (older) page."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    keys = store.feed_entry_keys(limit=limit + 1, before=(before.at, before.entry_id) if before else None, since=since)
    more = len(keys) > limit
    entries = build_entries(store, keys[:limit])
    last = entries[-1] if entries else None
    return FeedPage(entries, Cursor(last.created_at or "", last.id) if more and last else None)


def feed_entries(store: Store, *, limit: int = 50, since: str | None = None) -> list[FeedEntry]:
    """The newest ``limit`` entries (at or after ``since``, an ISO time)."""
    return feed_page(store, limit=limit, since=since).entries


def entry_for_post(store: Store, post_id: str) -> FeedEntry | None:
    """The feed entry a stored post belongs to; None when it is not (or no longer) in the feed."""
    key = store.feed_entry_key_of_post(post_id)
    return build_entries(store, [key])[0] if key is not None else None


def build_entries(store: Store, keys: Sequence[Any]) -> list[FeedEntry]:
    """Entries for rows of ``entry_id``/``at``/``entered_at`` (as the store's feed queries return them), in order."""
    ids = [k["entry_id"] for k in keys]
    rows_of: dict[str, list[Any]] = defaultdict(list)
    for row in store.feed_entry_rows(ids):
        rows_of[row["entry_id"]].append(row)
    echoes_of: dict[str, list[Echo]] = defaultdict(list)
    for row in store.feed_echo_rows(ids):
        echoes_of[row["entry_id"]].append(Echo(row["id"], row["author_handle"], row["url"], row["via"]))
    entries = []
    for key in keys:
        if rows_of[key["entry_id"]]:
            entry = _entry(key, rows_of[key["entry_id"]])
            entry.echoes = echoes_of[key["entry_id"]]
            entries.append(entry)
    return entries


def _entry(key: Any, rows: list[Any]) -> FeedEntry:
    entry_id = key["entry_id"]
    # Show the original itself when the timeline carried it, else the first retweet of it.
    first = next((r for r in rows if r["id"] == entry_id), rows[0])
    original = _original(first) if first["via"] == "retweet" else {}
    entry = FeedEntry(
        id=entry_id,
        post_id=rows[0]["id"],
        url=first["url"],
        text=original.get("text", first["text"]),
        created_at=key["at"],
        entered_at=key["entered_at"] or None,
        author_name=original.get("author_name", first["author_name"]),
        author_handle=original.get("author_handle", first["author_handle"]),
        author_avatar=original.get("author_avatar", first["author_avatar"]),
        via=first["via"],
    )
    seen: set[str] = set()
    for row in rows:
        if row["via"] == "retweet" and row["author_handle"] and row["author_handle"] not in entry.reposted_by:
            entry.reposted_by.append(row["author_handle"])
        if row["sha256"] in seen:
            continue
        seen.add(row["sha256"])
        entry.images.append(
            FeedImage(
                media_key=row["media_key"],
                url=row["media_url"] or row["preview_url"],
                sha256=row["sha256"],
                width=row["width"],
                height=row["height"],
                bytes=row["bytes"],
                p_2d=row["p_2d"],
                model_version=row["model_version"],
                routed_by=row["routed_by"],
            )
        )
    return entry


def _original(row: Any) -> dict[str, str]:
    """A retweet's original as the source recorded it (text, author; the ``original_*`` columns), each field
    only where known; empty when the source did not have the original."""
    fields = ("text", "author_name", "author_handle", "author_avatar")
    return {k: row[f"original_{k}"] for k in fields if row[f"original_{k}"]}
