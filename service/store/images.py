"""Images by content hash, their feature vectors, and a person's label history. Mixed into ``Store``."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

import numpy as np

from .base import StoreBase, _chunks
from .connection import utc_now

_SHA256 = re.compile(r"[0-9a-f]{64}")
_FLOAT32 = np.dtype("<f4")


class ImageQueries(StoreBase):
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

    def label_history(self, image_id: int) -> list[sqlite3.Row]:
        """Every answer given for one image, oldest first (who, when, from where), for review and undo."""
        return self.conn.execute("SELECT * FROM labels WHERE image_id = ? ORDER BY id", (image_id,)).fetchall()
