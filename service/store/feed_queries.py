"""Queries for the feed's faces (web page, Atom/JSON feeds, metrics) and the forwarders' outbox. Mixed into Store."""

from __future__ import annotations

import sqlite3


class FeedQueries:
    conn: sqlite3.Connection
