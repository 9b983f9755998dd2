"""The feed as JSON Feed 1.1 (https://jsonfeed.org/version/1.1), images as attachments.

The model's figures per image go in the ``_nijifeed`` extension object (the spec reserves keys starting with an
underscore for extensions, which readers ignore).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.feed.atom import entry_id
from service.feed.entries import FeedEntry
from service.feed.render import Attach, FeedMeta, entry_html, entry_text, entry_title, rfc3339

VERSION = "https://jsonfeed.org/version/1.1"
MEDIA_TYPE = "application/feed+json"


def render_json_feed(entries: Sequence[FeedEntry], meta: FeedMeta, attach: Attach) -> dict[str, Any]:
    feed: dict[str, Any] = {
        "version": VERSION,
        "title": meta.title,
        "home_page_url": meta.home_url,
        "feed_url": meta.feed_url,
        "description": "2D illustrations from an X home timeline, filtered by nijifeed.",
        "authors": [{"name": "nijifeed"}],
        "items": [_item(entry, attach) for entry in entries],
    }
    if meta.next_url:
        feed["next_url"] = meta.next_url
    return feed


def _item(entry: FeedEntry, attach: Attach) -> dict[str, Any]:
    attachments = [attach(image) for image in entry.images]
    author: dict[str, str] = {"name": entry.author_name or entry.author_handle or "unknown"}
    if entry.author_handle:
        author["url"] = f"https://x.com/{entry.author_handle}"
    if entry.author_avatar:
        author["avatar"] = entry.author_avatar
    item: dict[str, Any] = {
        "id": entry_id(entry),
        "title": entry_title(entry),
        "content_html": entry_html(entry, attach),
        "content_text": entry_text(entry),
        "authors": [author],
        "attachments": [
            {"url": a.url, "mime_type": a.mime_type, **({"size_in_bytes": a.length} if a.length else {})}
            for a in attachments
        ],
        "_nijifeed": {
            "post_id": entry.id,
            "reposted_by": entry.reposted_by,
            "echoes": [{"post_id": e.post_id, "author_handle": e.author_handle, "url": e.url, "via": e.via}
                       for e in entry.echoes],
            "images": [
                {"sha256": i.sha256, "p_2d": i.p_2d, "model_version": i.model_version, "routed_by": i.routed_by,
                 "original_url": i.url}
                for i in entry.images
            ],
        },
    }
    if entry.url:
        item["url"] = entry.url
    if attachments:
        item["image"] = attachments[0].url
    published = rfc3339(entry.created_at)
    if published:
        item["date_published"] = published
    return item
