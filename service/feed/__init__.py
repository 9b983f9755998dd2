"""The filtered timeline: posts with at least one image routed to the feed, showing only those images.

``entries`` builds the entries (one per piece of content, newest first, paged by cursor); ``atom`` and ``jsonfeed``
render them for feed readers; ``forward`` sends new entries elsewhere, each once, through the store's outbox.
"""

from __future__ import annotations

from service.feed.entries import Cursor, FeedEntry, FeedImage, FeedPage, entry_for_post, feed_entries, feed_page

__all__ = ["Cursor", "FeedEntry", "FeedImage", "FeedPage", "entry_for_post", "feed_entries", "feed_page"]
