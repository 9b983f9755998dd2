"""SQLite store: schema, migrations, and the queries every other part needs (stdlib sqlite3, no ORM).

Imports point one way: ``connection`` (connect, migrate) ← ``base`` (the connection's transactions, kv and write
primitives) ← one query mixin per part of the journey ← ``Store``, which only puts them together.
"""

from .connection import SchemaTooNewError, StoreError, connect, migrate, schema_version, utc_now
from .feed_queries import FeedQueries
from .images import ImageQueries
from .journey import JourneyQueries
from .migrations import MIGRATIONS
from .models import ModelQueries
from .review_queries import ReviewQueries, UndoError


class Store(ImageQueries, ModelQueries, JourneyQueries, FeedQueries, ReviewQueries):
    """One connection to the store, with every part's queries. Create with ``Store.open(path)``."""


__all__ = [
    "MIGRATIONS",
    "SchemaTooNewError",
    "Store",
    "StoreError",
    "UndoError",
    "connect",
    "migrate",
    "schema_version",
    "utc_now",
]
