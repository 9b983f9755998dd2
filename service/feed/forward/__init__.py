"""Forwarders: send each new feed entry elsewhere (a repost or bookmark on X, a webhook), exactly once.

Each is off by default and switched on in settings. ``make_forwarders(settings)`` builds the enabled ones (once:
they keep a resolved X user id and an HTTP client); ``deliver_due(settings, store, forwarders)`` is the daemon's
job: it enqueues entries new to each forwarder in the store's ``outbox`` and delivers what is due. How exactly-once
is kept is described in ``service.feed.forward.outbox``.
"""

from __future__ import annotations

from service.feed.forward.base import Forwarder, ForwardError
from service.feed.forward.outbox import DeliverySummary, deliver_due, enqueue, make_forwarders

__all__ = ["DeliverySummary", "ForwardError", "Forwarder", "deliver_due", "enqueue", "make_forwarders"]
