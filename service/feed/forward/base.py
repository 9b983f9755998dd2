"""The forwarder interface, kept apart so the outbox and each forwarder depend on it and not on each other."""

from __future__ import annotations

from typing import Protocol

from service.errors import NijifeedError
from service.feed.entries import FeedEntry


class ForwardError(NijifeedError):
    """A delivery failed. ``retryable``: trying again later may work (5xx, 429, a timeout); otherwise the outbox
    row is given up at once (a 4xx the receiver will answer the same way every time)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Forwarder(Protocol):
    #: The outbox's ``forwarder`` column: one row per (post, name).
    name: str
    #: Whether sending the same entry again after a crash mid-send is harmless: the action is idempotent (a
    #: repost or bookmark of an already reposted or bookmarked post changes nothing) or the receiver can drop the
    #: repeat by its idempotency key. When False, a send interrupted by a crash is given up instead of repeated.
    resend_safe: bool

    def send(self, entry: FeedEntry, idempotency_key: str) -> None:
        """Deliver one entry, or raise ``ForwardError``."""
        ...

    def close(self) -> None: ...
