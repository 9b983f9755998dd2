"""Queries for the review queue and the active-learning loop (labels, undo, re-scoring, report). Mixed into Store.

A label is more than a row in ``labels``: it routes the image (``images.route``, every media row showing it) and
resolves its queue row. All of that happens in one transaction, together with an undo record, so an answer is
either wholly stored or not at all, and ``undo_label`` can put back exactly what was there before.

The undo records (the last ``UNDO_DEPTH`` answers given in review) live in ``kv`` under ``UNDO_KEY`` as JSON:
they are written in the same transaction as the label they describe, so they can never disagree with it.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable

from service.errors import NijifeedError
from service.route import ROUTE_OF_LABEL, Routed
from service.words import UNDO_DEPTH, Label, LabelSource

from .base import StoreBase
from .connection import utc_now as _now

UNDO_KEY = "review:undo"

#: One open queue item with what a reviewer needs to see: the verdict, one media row and the post showing it.
_ITEM_SELECT = """
SELECT q.image_id, q.reason, q.priority, q.model_version, q.added_at, q.resolved_at, q.resolution,
       images.sha256, images.cache_path, images.route, v.p_2d, v.margin, v.verdict,
       m.media_key, coalesce(m.url, m.preview_url) AS media_url,
       p.author_name, p.author_handle, p.text, p.url AS post_url
FROM review_queue q
JOIN images ON images.id = q.image_id
LEFT JOIN verdicts v ON v.id = images.verdict_id
LEFT JOIN media m ON m.id = (SELECT min(id) FROM media WHERE media.image_id = q.image_id)
LEFT JOIN posts p ON p.id = (
    SELECT pm.post_id FROM post_media pm JOIN posts p2 ON p2.id = pm.post_id
    WHERE pm.media_id = m.id ORDER BY p2.created_at, p2.id LIMIT 1)
"""


class UndoError(NijifeedError):
    """The answer cannot be undone (it was changed since, or there is nothing to undo); the message says which."""


class ReviewQueries(StoreBase):
    # --- the queue ------------------------------------------------------------------------------------------------

    def open_review_items(self) -> list[sqlite3.Row]:
        """Every open queue item (uncertain and audit), most uncertain first; the caller mixes audits in."""
        return self.conn.execute(
            _ITEM_SELECT + " WHERE q.resolved_at IS NULL ORDER BY q.priority DESC, q.image_id"
        ).fetchall()

    def review_item(self, image_id: int) -> sqlite3.Row | None:
        """One queue item, open or resolved, as ``open_review_items`` shows it."""
        return self.conn.execute(_ITEM_SELECT + " WHERE q.image_id = ?", (image_id,)).fetchone()

    def image_id_of(self, ref: str) -> int | None:
        """The image an id (digits) or a media key names, as `review label` accepts either."""
        ref = ref.strip()
        if ref.isdigit():
            row = self.conn.execute("SELECT id FROM images WHERE id = ?", (int(ref),)).fetchone()
        else:
            row = self.conn.execute("SELECT image_id AS id FROM media WHERE media_key = ?", (ref,)).fetchone()
        return None if row is None or row["id"] is None else int(row["id"])

    def image_sha256(self, image_id: int) -> str | None:
        row = self.conn.execute("SELECT sha256 FROM images WHERE id = ?", (image_id,)).fetchone()
        return None if row is None else str(row[0])

    def current_label(self, image_id: int) -> str | None:
        row = self.conn.execute(
            "SELECT label FROM labels WHERE image_id = ? AND superseded_by IS NULL", (image_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    # --- labelling and undo ---------------------------------------------------------------------------------------

    def label_image(
        self, image_id: int, label: Label, *, source: LabelSource, author: str | None = None, undoable: bool = True
    ) -> int:
        """Store a person's answer and act on it: route the image by the label, resolve its queue row.

        Returns the new label's id. With ``undoable``, what the answer changed is recorded so ``undo_label`` can
        restore it (only the last ``UNDO_DEPTH`` answers are kept).
        """
        route = ROUTE_OF_LABEL[label]
        now = _now()
        with self.transaction() as conn:
            image = conn.execute("SELECT route, routed_by, routed_at FROM images WHERE id = ?", (image_id,)).fetchone()
            if image is None:
                raise KeyError(f"no image {image_id}")
            queue = conn.execute(
                "SELECT resolved_at, resolution FROM review_queue WHERE image_id = ?", (image_id,)
            ).fetchone()
            previous = conn.execute(
                "SELECT id FROM labels WHERE image_id = ? AND superseded_by IS NULL", (image_id,)
            ).fetchone()
            label_id = self.add_label(image_id, label, source, author)
            self._set_route(conn, image_id, route, "label", now)
            conn.execute(
                "UPDATE review_queue SET resolved_at = ?, resolution = 'labelled' WHERE image_id = ?"
                " AND resolved_at IS NULL",
                (now, image_id),
            )
            if undoable:
                record = {
                    "label_id": label_id,
                    "image_id": image_id,
                    "label": label,
                    "previous_label_id": None if previous is None else int(previous[0]),
                    "image": dict(image),
                    "queue": None if queue is None else dict(queue),
                }
                journal = self.undo_journal() + [record]
                self.set_kv(UNDO_KEY, json.dumps(journal[-UNDO_DEPTH:]))
        return label_id

    def undo_journal(self) -> list[dict]:
        """The answers that can still be undone, oldest first."""
        return json.loads(self.get_kv(UNDO_KEY) or "[]")

    def undo_label(self, label_id: int | None = None) -> dict:
        """Take back an answer (the latest one, or ``label_id``): the label row is deleted, the previous label is
        current again, and the image's route and queue row are as they were before. Returns the undone record.

        Refused (``UndoError``) when the image was labelled again since: undoing the older answer would silently
        overwrite the newer one.
        """
        with self.transaction() as conn:
            journal = self.undo_journal()
            index = next(
                (i for i in range(len(journal) - 1, -1, -1) if label_id is None or journal[i]["label_id"] == label_id),
                None,
            )
            if index is None:
                raise UndoError("nothing to undo" if label_id is None else f"label {label_id} cannot be undone")
            record = journal.pop(index)
            self.set_kv(UNDO_KEY, json.dumps(journal))  # a stale record is dropped too: it can never be undone
            current = conn.execute(
                "SELECT id FROM labels WHERE image_id = ? AND superseded_by IS NULL", (record["image_id"],)
            ).fetchone()
            stale = current is None or int(current[0]) != record["label_id"]
            if not stale:
                self._restore(conn, record)
        if stale:
            raise UndoError(
                f"image {record['image_id']} was labelled again since that answer; label it again instead of undoing"
            )
        return record

    def _restore(self, conn: sqlite3.Connection, record: dict) -> None:
        image_id, image = record["image_id"], record["image"]
        # Delete first: the one-current-label index must hold after each statement (the previous row's reference
        # to the deleted one is deferred, and cleared before COMMIT).
        conn.execute("DELETE FROM labels WHERE id = ?", (record["label_id"],))
        conn.execute("UPDATE labels SET superseded_by = NULL WHERE id = ?", (record["previous_label_id"],))
        self._set_route(conn, image_id, image["route"], image["routed_by"], image["routed_at"])
        queue = record["queue"]
        if queue is not None:
            conn.execute(
                "UPDATE review_queue SET resolved_at = ?, resolution = ? WHERE image_id = ?",
                (queue["resolved_at"], queue["resolution"], image_id),
            )

    # --- re-scoring after a new model -----------------------------------------------------------------------------

    def waiting_for_review(self) -> list[sqlite3.Row]:
        """Images the model sent to review that nobody has answered yet: what a new model re-scores. Audit items
        are not among them: they are confident verdicts kept for measuring, and stay for a person."""
        return self.conn.execute(
            "SELECT images.id, images.sha256, images.cache_path FROM review_queue q"
            " JOIN images ON images.id = q.image_id"
            " WHERE q.resolved_at IS NULL AND q.reason = 'uncertain' AND images.route = 'review' ORDER BY images.id"
        ).fetchall()

    def apply_rescored(self, model_version: int, rescored: Iterable[Routed]) -> Counter:
        """Record a new model's verdicts on waiting images. A confident one leaves the queue, routed as usual
        (``routed_by = 'auto'``, queue resolution ``'auto'``), unless drawn for audit (routed, but kept in the
        queue as an audit item); an uncertain one stays, ordered by its new score. Images answered meanwhile are
        left alone. Returns counts: ``feed`` and ``dropped`` (left the queue), ``audit``, ``uncertain``."""
        counts: Counter = Counter()
        now = _now()
        with self.transaction() as conn:
            for item in rescored:
                verdict_id = self.add_verdict(
                    item.image_id, model_version, item.verdict, item.p_2d, item.margin, item.score, item.audit
                )
                if item.verdict == "uncertain":
                    changed = conn.execute(
                        "UPDATE images SET verdict_id = ? WHERE id = ? AND route = 'review'",
                        (verdict_id, item.image_id),
                    ).rowcount
                    conn.execute(
                        "UPDATE review_queue SET priority = ?, model_version = ? WHERE image_id = ?"
                        " AND resolved_at IS NULL AND reason = 'uncertain'",
                        (item.score, model_version, item.image_id),
                    )
                    counts["uncertain"] += changed
                    continue
                if not self._set_route(conn, item.image_id, item.route, "auto", now, verdict_id=verdict_id,
                                       only_from="review"):
                    continue
                if item.audit:
                    conn.execute(
                        "UPDATE review_queue SET reason = 'audit', priority = ?, model_version = ? WHERE image_id = ?",
                        (item.score, model_version, item.image_id),
                    )
                    counts["audit"] += 1
                else:
                    conn.execute(
                        "UPDATE review_queue SET resolved_at = ?, resolution = 'auto', model_version = ?"
                        " WHERE image_id = ?",
                        (now, model_version, item.image_id),
                    )
                    counts[item.route] += 1
        return counts

    # --- figures for stats and the report -------------------------------------------------------------------------

    def labels_since(self, since_iso: str | None) -> int:
        """Current labels given after ``since_iso`` (all when None): the new answers a retrain would learn from."""
        query = "SELECT count(*) FROM labels WHERE superseded_by IS NULL"
        args: tuple = ()
        if since_iso is not None:
            query += " AND created_at > ?"
            args = (since_iso,)
        return int(self.conn.execute(query, args).fetchone()[0])

    def labelled_images(self) -> list[sqlite3.Row]:
        """Every image with a current label (id, sha256, cache path, label): the store's part of a training set."""
        return self.conn.execute(
            "SELECT images.id, images.sha256, images.cache_path, labels.label FROM labels"
            " JOIN images ON images.id = labels.image_id WHERE labels.superseded_by IS NULL ORDER BY images.id"
        ).fetchall()

    def review_counts(self) -> dict[str, Counter]:
        """Open items by reason, resolved ones by resolution, current labels by answer and by source."""
        def counter(query: str) -> Counter:
            return Counter({str(k): int(n) for k, n in self.conn.execute(query)})

        return {
            "open": counter("SELECT reason, count(*) FROM review_queue WHERE resolved_at IS NULL GROUP BY reason"),
            "resolved": counter(
                "SELECT resolution, count(*) FROM review_queue WHERE resolved_at IS NOT NULL GROUP BY resolution"
            ),
            "labels": counter("SELECT label, count(*) FROM labels WHERE superseded_by IS NULL GROUP BY label"),
            "sources": counter("SELECT source, count(*) FROM labels WHERE superseded_by IS NULL GROUP BY source"),
        }

    def audit_outcomes(self) -> list[sqlite3.Row]:
        """(model_version, verdict, label) for every audited confident verdict whose image has a label: the
        unbiased sample the feed's precision is estimated from."""
        return self.conn.execute(
            "SELECT v.model_version, v.verdict, l.label FROM verdicts v"
            " JOIN labels l ON l.image_id = v.image_id AND l.superseded_by IS NULL"
            " WHERE v.audit = 1 AND v.verdict != 'uncertain' ORDER BY v.id"
        ).fetchall()

    def first_verdicts_by_model(self) -> list[sqlite3.Row]:
        """Per model version, images it classified first and how many of them it sent to review: the live review
        rate (re-scoring verdicts are later ones, and would count the hard cases twice)."""
        return self.conn.execute(
            "SELECT v.model_version, count(*) AS n, sum(v.verdict = 'uncertain') AS uncertain FROM verdicts v"
            " JOIN (SELECT image_id, min(id) AS id FROM verdicts GROUP BY image_id) f ON f.id = v.id"
            " GROUP BY v.model_version ORDER BY v.model_version"
        ).fetchall()

    def review_load(self, since_iso: str) -> dict[str, Counter]:
        """Per UTC day since ``since_iso``: items queued, answers given (review and import), items auto-resolved."""
        def per_day(query: str) -> Counter:
            return Counter({str(d): int(n) for d, n in self.conn.execute(query, (since_iso,))})

        return {
            "queued": per_day(
                "SELECT substr(added_at, 1, 10), count(*) FROM review_queue WHERE added_at >= ? GROUP BY 1"
            ),
            "labelled": per_day(
                "SELECT substr(created_at, 1, 10), count(*) FROM labels WHERE created_at >= ?"
                " AND source != 'folder' GROUP BY 1"
            ),
            "auto": per_day(
                "SELECT substr(resolved_at, 1, 10), count(*) FROM review_queue WHERE resolved_at >= ?"
                " AND resolution = 'auto' GROUP BY 1"
            ),
        }
