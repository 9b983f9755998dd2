"""The store's foundation: one connection, its transactions, small named values, and the write primitives the
query mixins share (a verdict, a label, an image's route). Every mixin subclasses ``StoreBase``, so imports point
one way: mixins → base → connection.

One ``Store`` per thread: sqlite3 connections are not shared across threads here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

from service.route import MIRRORING, media_status
from service.words import Label, Route, RoutedBy, Verdict

from .connection import connect, migrate, utc_now

_IN_CHUNK = 500  # ids per "IN (...)" query; well under SQLite's bound-parameter limit
_MIRRORING_SQL = "(" + ", ".join(f"'{status}'" for status in MIRRORING) + ")"


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


class StoreBase:
    """One connection to the store. Create with ``Store.open(path)``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._depth = 0

    @classmethod
    def open(cls, path: Path) -> Self:
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

    def __enter__(self) -> Self:
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
            begin: tuple[str, ...] = ("BEGIN IMMEDIATE",)
            commit: tuple[str, ...] = ("COMMIT",)
            rollback: tuple[str, ...] = ("ROLLBACK",)
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

    # --- routes -------------------------------------------------------------------------------------------------

    def _set_route(
        self,
        conn: sqlite3.Connection,
        image_id: int,
        route: Route | None,
        routed_by: RoutedBy | None,
        routed_at: str | None,
        *,
        verdict_id: int | None = None,
        only_from: Route | Literal["unrouted", "any"] = "any",
    ) -> bool:
        """Set an image's route and mirror it onto every media row showing the image: the one place a route is
        written. ``only_from`` makes the write conditional on the route it replaces (a re-run after a crash then
        changes nothing). Returns whether the image changed."""
        sets = "route = ?, routed_by = ?, routed_at = ?" + (", verdict_id = ?" if verdict_id is not None else "")
        args: list[Any] = [route, routed_by, routed_at] + ([verdict_id] if verdict_id is not None else [])
        where = " WHERE id = ?"
        args.append(image_id)
        if only_from == "unrouted":
            where += " AND route IS NULL"
        elif only_from != "any":
            where += " AND route = ?"
            args.append(only_from)
        if not conn.execute(f"UPDATE images SET {sets}{where}", args).rowcount:
            return False
        conn.execute(
            f"UPDATE media SET status = ?, updated_at = ? WHERE image_id = ? AND status IN {_MIRRORING_SQL}",
            (media_status(route), utc_now(), image_id),
        )
        return True
