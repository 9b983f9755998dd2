"""Sources yield new posts with their media references, newest first, page by page.

A source knows nothing of images or models. The pipeline stores each page's posts as they arrive and advances
the cursor (``since_id``) only when every page of a poll is stored, so a crash mid-poll re-reads, never skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from service.errors import NijifeedError
from service.words import MediaKind


@dataclass(frozen=True)
class MediaRef:
    """One attached image (or a video/GIF preview) as the source describes it; ``media_key`` is its identity."""

    media_key: str
    kind: MediaKind
    url: str | None  # photos: the image itself; files: a file:// URL
    preview_url: str | None = None  # videos and GIFs only have this
    width: int | None = None
    height: int | None = None
    alt_text: str | None = None


@dataclass(frozen=True)
class OriginalPost:
    """The post a retweet or quote refers to, as the answer that carried the timeline entry described it."""

    id: str
    text: str
    url: str
    created_at: str | None = None
    author_id: str | None = None
    author_name: str | None = None
    author_handle: str | None = None
    author_avatar: str | None = None


@dataclass(frozen=True)
class Post:
    """A timeline entry, with the media it shows (its own, or those of the post it retweets or quotes)."""

    id: str
    text: str
    created_at: str | None  # ISO 8601, as the API gives it
    url: str
    author_id: str | None = None
    author_name: str | None = None
    author_handle: str | None = None
    author_avatar: str | None = None
    media: tuple[MediaRef, ...] = ()
    #: "retweet" or "quote" when the media came from a referenced post, with that post's id.
    via: str | None = None
    via_id: str | None = None
    #: The retweeted or quoted post, when the answer included it.
    original: OriginalPost | None = None
    #: The source's own record of the entry (the API's JSON for X), kept in the store for later backfills.
    raw: dict = field(default_factory=dict, compare=False)


@dataclass
class Page:
    posts: list[Post]
    newest_id: str | None  # the page's meta.newest_id
    reads: int  # posts billed for this page (result_count plus expanded referenced posts)
    errors: list[str] = field(default_factory=list)  # partial errors beside data: logged, data used
    gap: str | None = None  # why posts may be missing before this page (the source could not read back that far)


class SourceError(NijifeedError):
    """A poll failed; ``retry_after`` (seconds) says when trying again makes sense, ``fatal`` that it will not
    help until the user changes something (credentials, plan)."""

    def __init__(self, message: str, *, retry_after: float | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.fatal = fatal


class Source(Protocol):
    name: str

    def pages(self, since_id: str | None) -> Iterator[Page]:
        """Pages newest first, back to ``since_id`` (exclusive) or the source's own bound. Raises SourceError."""
        ...
