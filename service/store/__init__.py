"""SQLite store: schema, migrations, and the queries every other part needs (stdlib sqlite3, no ORM)."""

from .db import SchemaTooNewError, Store, StoreError, connect, migrate, schema_version, utc_now
from .migrations import MIGRATIONS

__all__ = [
    "MIGRATIONS",
    "SchemaTooNewError",
    "Store",
    "StoreError",
    "connect",
    "migrate",
    "schema_version",
    "utc_now",
]
