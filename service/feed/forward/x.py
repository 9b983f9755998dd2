"""Repost (retweet) or bookmark each feed entry with the user's X account.

It rides on ``XClient``: the same credentials (OAuth 1.0a or an OAuth 2.0 user token), the configurable API base
URL, a timeout on every call, the same retries and error messages, and the user id resolved once from
``GET /2/users/me``. The entry's id is the original post, so a retweet in the timeline reposts the original.
Both actions are idempotent on X (a post is reposted or bookmarked, or not): the client answers ``ALREADY_DONE``
when X refuses a repeat, which is the state asked for, so a resend after a crash is harmless.
"""

from __future__ import annotations

import logging
from typing import Literal

from service.feed.entries import FeedEntry
from service.feed.forward.base import ForwardError
from service.sources import SourceError
from service.sources.x_client import WriteResult, XClient

log = logging.getLogger(__name__)

Action = Literal["repost", "bookmark"]


class XForwarder:
    resend_safe = True

    def __init__(self, client: XClient, action: Action) -> None:
        self.client = client
        self.action = action
        self.name = f"x_{action}"

    def send(self, entry: FeedEntry, idempotency_key: str) -> None:  # noqa: ARG002 - X has no such key
        write = self.client.repost if self.action == "repost" else self.client.bookmark
        try:
            result = write(entry.id)
        except SourceError as exc:
            raise ForwardError(f"X {self.action}: {exc}", retryable=not exc.fatal) from None
        if result is WriteResult.ALREADY_DONE:
            log.info("X %s of %s: already done", self.action, entry.id)

    def close(self) -> None:
        pass
