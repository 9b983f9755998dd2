"""Queries for the review queue and the active-learning loop (labels, undo, re-scoring). Mixed into Store."""

from __future__ import annotations

import sqlite3


class ReviewQueries:
    conn: sqlite3.Connection
