"""The review queue as a person meets it: which item comes next, and what an answer or an undo does.

Order is uncertainty sampling (the most uncertain first: those answers teach the next model most), with one audit
item mixed in every ``audit_every`` items so the feed's precision keeps being measured while the uncertain band
is worked through. Every answer is stored at once by the store, with what it needs to be undone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

from service.errors import InputError
from service.store import Store, UndoError
from service.words import Label

#: What a person may type for each label (the review keys and `review label` alike).
ANSWERS: dict[str, Label] = {"2d": "2d", "2": "2d", "a": "2d", "not2d": "not2d", "not-2d": "not2d", "n": "not2d",
                            "x": "not2d"}
T = TypeVar("T")


@dataclass
class ReviewItem:
    image_id: int
    reason: str  # "uncertain" or "audit"
    media_key: str | None
    url: str | None
    p_2d: float | None
    margin: float | None
    model_version: int | None
    added_at: str
    priority: float = 0.0
    sha256: str = ""
    cache_path: str | None = None
    author_name: str | None = None
    author_handle: str | None = None
    text: str | None = None
    post_url: str | None = None

    @classmethod
    def from_row(cls, row) -> ReviewItem:
        return cls(
            image_id=int(row["image_id"]),
            reason=row["reason"],
            media_key=row["media_key"],
            url=row["media_url"],
            p_2d=row["p_2d"],
            margin=row["margin"],
            model_version=row["model_version"],
            added_at=row["added_at"],
            priority=float(row["priority"]),
            sha256=row["sha256"],
            cache_path=row["cache_path"],
            author_name=row["author_name"],
            author_handle=row["author_handle"],
            text=row["text"],
            post_url=row["post_url"],
        )

    def to_dict(self) -> dict:
        return asdict(self)


def interleave(uncertain: Sequence[T], audit: Sequence[T], every: int) -> list[T]:
    """``uncertain`` in order with one ``audit`` item after each ``every - 1`` of them; leftovers at the end.

    ``every=1`` shows audit items first. Pure, so the order is easy to test and the same for CLI and session.
    """
    if every < 1:
        raise InputError("every must be >= 1")
    out: list[T] = []
    u, a = list(uncertain), list(audit)
    while u and a:
        out.extend(u[: every - 1])
        del u[: every - 1]
        out.append(a.pop(0))
    return out + u + a


def open_items(store: Store, *, limit: int | None = 100, audit_every: int = 5) -> list[ReviewItem]:
    """Open items in the order a person should see them (see the module docstring)."""
    items = [ReviewItem.from_row(row) for row in store.open_review_items()]
    ordered = interleave(
        [i for i in items if i.reason == "uncertain"], [i for i in items if i.reason == "audit"], audit_every
    )
    return ordered if limit is None else ordered[:limit]


def parse_label(text: str) -> Label:
    try:
        return ANSWERS[text.strip().lower()]
    except KeyError:
        raise InputError(f"unknown label {text!r}: use 2d or not2d") from None


def resolve(store: Store, ref: str) -> int:
    """The image id behind an image id or a media key, as `review list` shows them."""
    image_id = store.image_id_of(ref)
    if image_id is None:
        raise InputError(f"no image with id or media key {ref!r} (see `nijifeed review list`)")
    return image_id


def label(store: Store, image_id: int, answer: Label, *, author: str | None = None) -> int:
    """A reviewer's answer: stored, acted on (feed or dropped) and undoable. Returns the label id."""
    return store.label_image(image_id, answer, source="review", author=author)


def undo(store: Store, label_id: int | None = None) -> dict:
    """Take back the latest answer (or ``label_id``); raises ``UndoError`` with the reason when it cannot."""
    return store.undo_label(label_id)


__all__ = ["ANSWERS", "ReviewItem", "UndoError", "interleave", "label", "open_items", "parse_label",
           "resolve", "undo"]
