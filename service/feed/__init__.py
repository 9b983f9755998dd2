"""The filtered timeline: posts with at least one image routed to the feed, showing only those images."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from service.store import Store


@dataclass
class FeedImage:
    media_key: str
    url: str | None
    sha256: str
    p_2d: float | None
    model_version: int | None
    routed_by: str | None  # "model", or "label" when a person put it in the feed


@dataclass
class FeedEntry:
    post_id: str
    url: str | None
    text: str | None
    created_at: str | None
    author_name: str | None
    author_handle: str | None
    author_avatar: str | None
    via: str | None
    images: list[FeedImage] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def feed_entries(store: Store, *, limit: int = 50, since: str | None = None) -> list[FeedEntry]:
    """Newest post first; a post appears once however many of its images are in the feed."""
    entries: dict[str, FeedEntry] = {}
    for row in store.feed_rows(limit=limit, since=since):
        entry = entries.get(row["id"])
        if entry is None:
            entry = entries[row["id"]] = FeedEntry(
                post_id=row["id"],
                url=row["url"],
                text=row["text"],
                created_at=row["created_at"],
                author_name=row["author_name"],
                author_handle=row["author_handle"],
                author_avatar=row["author_avatar"],
                via=row["via"],
            )
        entry.images.append(
            FeedImage(
                media_key=row["media_key"],
                url=row["media_url"] or row["preview_url"],
                sha256=row["sha256"],
                p_2d=row["p_2d"],
                model_version=row["model_version"],
                routed_by=row["routed_by"],
            )
        )
    return list(entries.values())
