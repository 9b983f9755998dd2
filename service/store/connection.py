"""The SQLite connection settings and migrations every store connection goes through.

Every stage of the pipeline reads and writes through the store, so a crash between two stages loses nothing. The
rules that make that true are set here (and ``base.StoreBase.transaction`` keeps the last one):

* WAL journal, so readers (the web page, the review CLI) never block the daemon's writer and vice versa.
* ``busy_timeout``, so two processes that both want to write wait for each other instead of failing at once.
* Explicit transactions only (``isolation_level=None``): a write happens in ``Store.transaction()``, which starts
  with ``BEGIN IMMEDIATE`` (take the write lock up front, so a read-then-write never dies half-way on a lock
  upgrade) and either commits all of it or none of it.
* Foreign keys on, and CHECKs on every closed vocabulary, so a bad write fails where it is made.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from service.errors import NijifeedError

from .migrations import MIGRATIONS

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000


class StoreError(NijifeedError):
    """The store cannot be used as asked; the message says what to do."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer nijifeed; this code would misread it, so it refuses to touch it."""


def utc_now() -> str:
    """The store's timestamp format: ISO 8601 UTC with milliseconds, which sorts correctly as text."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` with the settings every part relies on.

    The connection is in autocommit mode; group writes with ``BEGIN IMMEDIATE`` (``Store.transaction``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread=False only so the daemon can close a worker thread's connection at shutdown, after
    # that thread has finished with it; a Store is still used by one thread at a time.
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = _enable_wal(conn)
        if mode != "wal":
            # Happens on filesystems without shared memory (some network mounts); still correct, just less concurrent.
            log.warning("SQLite WAL journal not available for %s (journal_mode=%s)", path, mode)
        # Safe with WAL: a power cut may lose the last commits, never corrupt the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _enable_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL (a persistent property of the file) and return the journal mode in force.

    Switching needs an exclusive lock and SQLite answers "database is locked" at once, without its busy handler,
    when another process is opening the same new file; so retry for up to the busy timeout.
    """
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while mode != "wal":
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    return mode


def schema_version(conn: sqlite3.Connection) -> int:
    """The newest migration recorded in this database; 0 for a new (or not yet migrated) one."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not exists:
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])


def _statements(script: str) -> Iterator[str]:
    """Split a SQL script into single statements, using SQLite's own tokenizer to find where each one ends.

    ``executescript`` cannot be used for migrations: it commits any open transaction before it runs, which would
    split a migration from its ``schema_version`` row.
    """
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                yield buffer
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise StoreError(f"incomplete SQL statement at the end of a migration: {buffer.strip()[:80]!r}")


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the database up to the newest schema this code knows; return the resulting version.

    Each missing migration runs in its own ``BEGIN IMMEDIATE`` transaction together with its ``schema_version`` row,
    so a failure leaves the database at the previous version, never half-way. The version is re-read under the write
    lock, so two processes starting together apply each migration once. Re-running is a no-op. A database newer
    than ``migrations`` raises ``SchemaTooNewError`` and is left untouched.
    """
    known = len(migrations)
    current = schema_version(conn)
    if current > known:
        raise SchemaTooNewError(
            f"the database is at schema version {current}, but this nijifeed only knows versions up to {known}; "
            "upgrade nijifeed, or point it at another data directory"
        )
    if current == known:
        return current
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for version, script in enumerate(migrations, start=1):
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(conn)
            if current > known:
                raise SchemaTooNewError(f"the database was migrated to version {current} by a newer nijifeed")
            if version > current:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, utc_now()))
                log.info("store: applied migration %d", version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return known
