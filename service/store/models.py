"""The registry of trained models: versions, the one active model, their CV figures. Mixed into ``Store``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import StoreBase, _json_default
from .connection import StoreError, utc_now


class ModelQueries(StoreBase):
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
