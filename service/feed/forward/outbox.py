"""The outbox: each feed entry forwarded exactly once per forwarder, retried with backoff, never twice after a crash.

* **Enqueue.** When a forwarder is first seen switched on (at the latest when the daemon starts), the time is
  kept in ``kv``
  (``forward:enabled_at:<name>``); from then on every entry that enters the feed gets one ``outbox`` row for that
  forwarder, under the post it first appeared through. The "not yet enqueued" check looks at the entry, not the
  post, and runs in the same write transaction as the insert, so an entry reached through several retweets is
  enqueued once, even by two processes at once. Entries already in the feed when it was switched on are not sent.
* **Deliver.** A due row is claimed by a conditional update to ``sending`` with a lease (``next_attempt_at`` =
  now + ``LEASE``), committed *before* the send; then the send; then ``delivered`` is committed. A failure puts the
  row back to ``pending`` at now + ``backoff × 2^(attempts-1)`` (at most ``MAX_BACKOFF``), or ``failed`` for good
  after ``max_attempts`` tries or an error that will not change (a 4xx).
* **The one unavoidable window**: a crash after the receiver got the request and before ``delivered`` is
  committed. No local bookkeeping can tell whether the receiver got it. Such a row stays ``sending``; when its
  lease runs out it is sent again only if the forwarder is ``resend_safe`` — X reposts and bookmarks are
  idempotent, and the JSON webhook repeats the same ``Idempotency-Key`` so the receiver can drop it — and given
  up (``failed``, with the reason) otherwise (Discord), so nothing is ever delivered twice by nijifeed's doing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.config import Settings
from service.feed.entries import build_entries, entry_for_post
from service.feed.forward.base import Forwarder, ForwardError
from service.feed.times import iso
from service.store import Store

log = logging.getLogger(__name__)

#: Every forwarder's name, so one switched off is noticed (its enable time is forgotten).
NAMES = ("x_repost", "x_bookmark", "webhook")
#: How long a claimed row may stay 'sending' before it is taken for a crashed send. Longer than any one send
#: (the HTTP timeout times the retries), so a slow send in progress is never taken for a dead one.
LEASE = timedelta(minutes=10)
MAX_BACKOFF = timedelta(hours=6)


@dataclass
class DeliverySummary:
    enqueued: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0  # given up: too many tries, a permanent error, or the entry left the feed
    abandoned: int = 0  # interrupted mid-send and not resend-safe: given up rather than perhaps sent twice

    def line(self) -> str:
        return (f"forwarders: {self.enqueued} enqueued, {self.delivered} delivered, {self.retrying} to retry, "
                f"{self.failed} failed, {self.abandoned} abandoned after an interrupted send")


def make_forwarders(settings: Settings) -> list[Forwarder]:
    """The forwarders switched on in ``settings``; build once and reuse (they hold clients and the X user id).
    Raises ``SourceError`` (fatal) when an X forwarder is on without X credentials."""
    forwarders: list[Forwarder] = []
    if settings.forward_x_repost or settings.forward_x_bookmark:
        from service.feed.forward.x import XForwarder
        from service.sources.x_client import XClient

        client = XClient.from_settings(settings)  # one client: the user id is resolved once for both
        if settings.forward_x_repost:
            forwarders.append(XForwarder(client, "repost"))
        if settings.forward_x_bookmark:
            forwarders.append(XForwarder(client, "bookmark"))
    if settings.forward_webhook_url is not None:
        from service.feed.forward.webhook import WebhookForwarder

        forwarders.append(WebhookForwarder(settings.forward_webhook_url.get_secret_value(),
                                           fmt=settings.forward_webhook_format, timeout=settings.http_timeout))
    return forwarders


def switched_on_since(store: Store, forwarders: Sequence[Forwarder], *, now: datetime | None = None) -> dict[str, str]:
    """When each enabled forwarder was switched on, recording ``now`` for those switched on just now (and
    forgetting those switched off). The daemon calls it as it starts, so what enters the feed before the forward
    job's first run is forwarded too."""
    stamp = iso(now or datetime.now(UTC))
    enabled = {f.name for f in forwarders}
    names = sorted(set(NAMES) | enabled)
    since = {name: store.forwarder_enabled_since(name, name in enabled, stamp) for name in names}
    return {name: at for name, at in since.items() if at is not None}


def enqueue(store: Store, forwarders: Sequence[Forwarder], *, now: datetime | None = None) -> int:
    """Add an outbox row per (new feed entry, enabled forwarder); returns how many were added."""
    stamp = iso(now or datetime.now(UTC))
    added = 0
    for name, since in switched_on_since(store, forwarders, now=now).items():
        with store.transaction():  # the check and the inserts under one write lock: two processes add one row
            done = store.forwarded_entry_ids(name)
            keys = [key for key in store.entries_entered_since(since) if key["entry_id"] not in done]
            for entry in build_entries(store, keys):
                added += store.outbox_add(entry.post_id, name, stamp)
    return added


def deliver_due(
    settings: Settings,
    store: Store,
    forwarders: Sequence[Forwarder] | None = None,
    *,
    now: datetime | None = None,
) -> DeliverySummary:
    """The daemon's forwarding job: enqueue new entries, then deliver every due outbox row once.

    ``forwarders``: from ``make_forwarders(settings)``, built once by the caller; None builds (and closes) them
    for this run only. ``now`` fixes the clock (tests)."""
    own = forwarders is None
    active = make_forwarders(settings) if own else list(forwarders)  # type: ignore[arg-type]
    try:
        summary = DeliverySummary(enqueued=enqueue(store, active, now=now))
        by_name = {f.name: f for f in active}
        for row in store.outbox_due(list(by_name), iso(now or datetime.now(UTC))):
            _deliver(store, by_name[row["forwarder"]], row, settings, summary, now)
    finally:
        if own:
            for forwarder in active:
                forwarder.close()
    if summary.enqueued or summary.delivered or summary.failed or summary.abandoned:
        log.info("%s", summary.line())
    return summary


def _deliver(store: Store, forwarder: Forwarder, row, settings: Settings, summary: DeliverySummary,
             now: datetime | None) -> None:
    start = now or datetime.now(UTC)
    if not store.outbox_claim(int(row["id"]), row["status"], iso(start), iso(start + LEASE)):
        return  # another deliverer took it
    row_id, attempts = int(row["id"]), int(row["attempts"]) + 1
    if row["status"] == "sending" and not forwarder.resend_safe:
        reason = "interrupted while sending (a crash or kill); not resent, as this receiver cannot drop a repeat"
        store.outbox_retry(row_id, reason, None)
        summary.abandoned += 1
        log.warning("forward %s of post %s: %s", forwarder.name, row["post_id"], reason)
        return
    entry = entry_for_post(store, row["post_id"])
    if entry is None:
        store.outbox_retry(row_id, "no longer in the feed (relabelled)", None)
        summary.failed += 1
        return
    try:
        forwarder.send(entry, f"nijifeed-{forwarder.name}-{entry.id}")
    except Exception as exc:  # noqa: BLE001 - any failure of one send is that row's, not the job's
        retryable = exc.retryable if isinstance(exc, ForwardError) else True
        message = str(exc) if isinstance(exc, ForwardError) else f"{type(exc).__name__}: {exc}"
        if retryable and attempts < settings.forward_max_attempts:
            delay = min(MAX_BACKOFF, timedelta(seconds=settings.forward_backoff * 2 ** (attempts - 1)))
            store.outbox_retry(row_id, message[:500], iso(start + delay))
            summary.retrying += 1
            log.warning("forward %s of post %s failed (try %d): %s; next try in %s", forwarder.name, entry.id,
                        attempts, message, delay)
        else:
            store.outbox_retry(row_id, message[:500], None)
            summary.failed += 1
            log.error("forward %s of post %s given up after %d tries: %s", forwarder.name, entry.id, attempts, message)
        return
    store.outbox_done(row_id, iso(now or datetime.now(UTC)))
    summary.delivered += 1
