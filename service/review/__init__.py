"""The review queue: images the model was unsure of (and an audit sample of sure ones), waiting for a person."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from service.store import Store


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

    def to_dict(self) -> dict:
        return asdict(self)


def open_items(store: Store, *, limit: int = 100) -> list[ReviewItem]:
    """Most uncertain first, as uncertainty sampling asks."""
    return [
        ReviewItem(
            image_id=int(row["image_id"]),
            reason=row["reason"],
            media_key=row["media_key"],
            url=row["media_url"],
            p_2d=row["p_2d"],
            margin=row["margin"],
            model_version=row["model_version"],
            added_at=row["added_at"],
        )
        for row in store.review_rows(limit)
    ]
