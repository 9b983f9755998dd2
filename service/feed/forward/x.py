"""Repost (retweet) or bookmark each feed entry with the user's X account.

It rides on ``XSource``: the same credentials (OAuth 1.0a or an OAuth 2.0 user token), the same ``_ApiSession``
(the configurable API base URL and a timeout on every call), the same retries and error messages, and the user id
resolved once from ``GET /2/users/me``. Calls: ``POST /2/users/:id/retweets`` and ``POST /2/users/:id/bookmarks``,
JSON ``{"tweet_id": ...}``; the entry's id is the original post, so a retweet in the timeline reposts the original.
Both actions are idempotent on X (a post is reposted or bookmarked, or not), so a resend after a crash is harmless.
"""

from __future__ import annotations

from typing import Literal

from service.feed.entries import FeedEntry
from service.feed.forward.base import ForwardError
from service.sources import SourceError
from service.sources.x import XSource

Action = Literal["repost", "bookmark"]
_ROUTES = {"repost": "retweets", "bookmark": "bookmarks"}


class XForwarder:
    resend_safe = True

    def __init__(self, source: XSource, action: Action) -> None:
        self.source = source
        self.action = action
        self.name = f"x_{action}"

    def send(self, entry: FeedEntry, idempotency_key: str) -> None:  # noqa: ARG002 - X has no such key
        source = self.source
        what = f"POST /2/users/:id/{_ROUTES[self.action]}"
        try:
            route = f"/2/users/{source.user_id()}/{_ROUTES[self.action]}"
            source.post(what, route, {"tweet_id": entry.id})
        except SourceError as exc:
            if "already" in str(exc).lower():  # "You have already retweeted this Tweet": the state we want
                return
            raise ForwardError(f"X {self.action}: {exc}", retryable=not exc.fatal) from None

    def close(self) -> None:
        pass
