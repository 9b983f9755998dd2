"""The SQLite store: connection settings, migrations, and the queries the other parts need.

Every stage of the pipeline reads and writes through here, so a crash between two stages loses nothing. The rules
that make that true live in this file:

* WAL journal, so readers (the web page, the review CLI) never block the daemon's writer and vice versa.
* ``busy_timeout``, so two processes that both want to write wait for each other instead of failing at once.
* Explicit transactions only (``isolation_level=None``): a write happens in ``Store.transaction()``, which starts
  with ``BEGIN IMMEDIATE`` (take the write lock up front, so a read-then-write never dies half-way on a lock
  upgrade) and either commits all of it or none of it.
* Foreign keys on, and CHECKs on every closed vocabulary, so a bad write fails where it is made.

One ``Store`` per thread: sqlite3 connections are not shared across threads here.
"""

from __future__ import annotations

from service.errors import NijifeedError

import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from .feed_queries import FeedQueries
from .journey import JourneyQueries
from .review_queries import ReviewQueries
from .migrations import MIGRATIONS

log = logging.getLogger(__name__)

Verdict = Literal["2d", "not2d", "uncertain"]
Label = Literal["2d", "not2d"]

BUSY_TIMEOUT_MS = 5000
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FLOAT32 = np.dtype("<f4")
_IN_CHUNK = 500  # ids per "IN (...)" query; well under SQLite's bound-parameter limit


class StoreError(NijifeedError):
    """The store cannot be used as asked; the message says what to do."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer nijifeed; this code would misread it, so it refuses to touch it."""


def utc_now() -> str:
    """The store's timestamp format: ISO 8601 UTC with milliseconds, which sorts correctly as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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


def _json_default(value: Any) -> Any:
    """Let metrics hold numpy scalars and arrays, as sklearn's results do."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _chunks(ids: list[int], size: int = _IN_CHUNK) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


class Store(JourneyQueries, FeedQueries, ReviewQueries):
    """One connection to the store, with the queries the parts use. Create with ``Store.open(path)``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._depth = 0

    @classmethod
    def open(cls, path: Path) -> Store:
        """Connect and migrate: the only way the parts should obtain a store."""
        conn = connect(path)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together, or none do if the block raises.

        The outermost level is ``BEGIN IMMEDIATE`` (the write lock is taken at once, waiting up to busy_timeout).
        A nested ``transaction()`` is a SAVEPOINT, so the query methods below, which each use one, compose into a
        caller's larger transaction: the pipeline can record a download, its image and its media status as one step.
        """
        conn = self.conn
        if self._depth == 0:
            begin, commit, rollback = ("BEGIN IMMEDIATE",), ("COMMIT",), ("ROLLBACK",)
        else:
            name = f"sp{self._depth}"
            begin, commit = (f"SAVEPOINT {name}",), (f"RELEASE {name}",)
            rollback = (f"ROLLBACK TO {name}", f"RELEASE {name}")
        for statement in begin:
            conn.execute(statement)
        self._depth += 1
        try:
            yield conn
        except BaseException:
            self._depth -= 1
            if conn.in_transaction:  # SQLite may already have rolled back by itself (e.g. disk full)
                for statement in rollback:
                    conn.execute(statement)
            raise
        self._depth -= 1
        for statement in commit:
            conn.execute(statement)

    # --- images -------------------------------------------------------------------------------------------------

    def add_image(self, sha256: str, width: int | None, height: int | None, nbytes: int | None, source: str) -> int:
        """The image's id, creating the row on first sight. The hash is the identity: a duplicate keeps the first
        row (and its first_seen/source) and returns its id, so one picture is classified and labelled once."""
        sha = sha256.lower()
        if not _SHA256.fullmatch(sha):
            raise ValueError(f"not a hex SHA-256 digest: {sha256!r}")
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO images (sha256, width, height, bytes, first_seen, source) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (sha256) DO NOTHING",
                (sha, width, height, nbytes, utc_now(), source),
            )
            return int(conn.execute("SELECT id FROM images WHERE sha256 = ?", (sha,)).fetchone()[0])

    def image_by_sha(self, sha256: str) -> sqlite3.Row | None:
        """Look a file up by content before decoding or classifying it again."""
        return self.conn.execute("SELECT * FROM images WHERE sha256 = ?", (sha256.lower(),)).fetchone()

    # --- features -----------------------------------------------------------------------------------------------

    def put_features(self, image_id: int, extractor: str, vector: np.ndarray) -> None:
        """Store (or replace) one image's feature vector as float32 bytes, so a retrain never re-extracts."""
        array = np.asarray(vector).astype(_FLOAT32, copy=False)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"a feature vector must be 1-D and non-empty, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError("a feature vector must be finite (as float32)")
        blob = array.tobytes()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO features (image_id, extractor, dim, vector, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (image_id, extractor) DO UPDATE SET"
                " dim = excluded.dim, vector = excluded.vector, created_at = excluded.created_at",
                (image_id, extractor, int(array.size), blob, utc_now()),
            )

    def get_features(self, image_ids: Iterable[int], extractor: str) -> dict[int, np.ndarray]:
        """Vectors by image id for one extractor (float32, exactly as stored); ids without one are absent, so the
        caller knows which images still need extracting."""
        ids = sorted({int(i) for i in image_ids})
        found: dict[int, np.ndarray] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT image_id, dim, vector FROM features WHERE extractor = ? AND image_id IN ({marks})",
                (extractor, *chunk),
            )
            for row in rows:
                found[int(row["image_id"])] = np.frombuffer(row["vector"], dtype=_FLOAT32).astype(np.float32)
        return found

    # --- models -------------------------------------------------------------------------------------------------

    def register_model(
        self,
        path: Path | str,
        extractor: str,
        kind: str,
        threshold: float | None,
        score_kind: str | None,
        metrics: Mapping[str, Any] | None,
    ) -> int:
        """Record a trained model (inactive) and return its new version; activation is a separate, deliberate step
        so a worse model can be registered and compared without going live."""
        metrics_json = json.dumps(dict(metrics or {}), sort_keys=True, default=_json_default)
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO models (path, extractor, kind, threshold, score_kind, metrics_json, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(path), extractor, kind, threshold, score_kind, metrics_json, utc_now()),
            )
            return int(cursor.lastrowid)  # type: ignore[arg-type]

    def activate_model(self, version: int) -> None:
        """Make ``version`` the one active model. Deactivating the old and activating the new happen in one
        transaction, so a reader never sees zero or two active models."""
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM models WHERE version = ?", (version,)).fetchone() is None:
                raise StoreError(f"no model version {version} (see `nijifeed model list`)")
            conn.execute("UPDATE models SET active = 0 WHERE active = 1 AND version != ?", (version,))
            conn.execute("UPDATE models SET active = 1 WHERE version = ?", (version,))

    def active_model(self) -> sqlite3.Row | None:
        """The model the pipeline classifies with; None until one has been trained and activated."""
        return self.conn.execute("SELECT * FROM models WHERE active = 1").fetchone()

    def list_models(self) -> list[sqlite3.Row]:
        """All registered models, oldest first, for the CLI's model listing and comparisons."""
        return self.conn.execute("SELECT * FROM models ORDER BY version").fetchall()

    # --- verdicts -----------------------------------------------------------------------------------------------

    def add_verdict(
        self,
        image_id: int,
        model_version: int,
        verdict: Verdict,
        p_2d: float | None,
        margin: float | None,
        score: float | None,
        audit: bool = False,
    ) -> int:
        """Record a model's verdict on an image and return the verdict's id. Idempotent per (image, model): a
        pipeline re-run after a crash keeps the first verdict (including its random audit draw) instead of
        re-rolling it, so an image is routed once per model."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO verdicts (image_id, model_version, verdict, p_2d, margin, score, audit, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_id, model_version) DO NOTHING",
                (image_id, model_version, verdict, p_2d, margin, score, int(bool(audit)), utc_now()),
            )
            row = conn.execute(
                "SELECT id FROM verdicts WHERE image_id = ? AND model_version = ?", (image_id, model_version)
            ).fetchone()
            return int(row[0])

    # --- labels -------------------------------------------------------------------------------------------------

    def add_label(self, image_id: int, label: Label, source: str, author: str | None = None) -> int:
        """Record a person's answer and return its id. It becomes the image's current label; the previous current
        row stays, pointing at this one through superseded_by, so the history of answers is never lost."""
        with self.transaction() as conn:
            # The write lock is held, so max(id) + 1 is ours; choosing the id first lets the old row point at the
            # new one before the new one exists (the reference is deferred to COMMIT), which keeps the
            # one-current-label-per-image index satisfied after every statement.
            new_id = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM labels").fetchone()[0])
            conn.execute(
                "UPDATE labels SET superseded_by = ? WHERE image_id = ? AND superseded_by IS NULL", (new_id, image_id)
            )
            conn.execute(
                "INSERT INTO labels (id, image_id, label, source, author, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (new_id, image_id, label, source, author, utc_now()),
            )
            return new_id

    def current_labels(self) -> list[tuple[int, str]]:
        """(image_id, label) for every labelled image, its latest answer only: the training set."""
        rows = self.conn.execute("SELECT image_id, label FROM labels WHERE superseded_by IS NULL ORDER BY image_id")
        return [(int(r[0]), str(r[1])) for r in rows]

    def label_history(self, image_id: int) -> list[sqlite3.Row]:
        """Every answer given for one image, oldest first (who, when, from where), for review and undo."""
        return self.conn.execute("SELECT * FROM labels WHERE image_id = ? ORDER BY id", (image_id,)).fetchall()

    # --- kv -----------------------------------------------------------------------------------------------------

    def get_kv(self, key: str, default: str | None = None) -> str | None:
        """A small named value (a cursor such as since_id, the last poll time), or ``default`` when unset."""
        row = self.conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_kv(self, key: str, value: str) -> None:
        """Set a small named value; inside a caller's transaction it commits with the work it describes (e.g. the
        since_id advances only together with the posts it covers)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, str(value)),
            )
