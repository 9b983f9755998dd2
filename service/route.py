"""Where a decision sends an image: the one home of verdict → route, label → route, the audit draw, and which
media statuses mirror their image's route. The cycle, re-scoring after a retrain and triage all ask here.

This module knows nothing of HTTP or of the store's tables; the store records what it says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from service.classify.uncertainty import Decision
from service.words import ROUTES, Label, MediaStatus, QueueReason, Route, Verdict

ROUTE_OF_VERDICT: dict[Verdict, Route] = {"2d": "feed", "not2d": "dropped", "uncertain": "review"}
ROUTE_OF_LABEL: dict[Label, Route] = {"2d": "feed", "not2d": "dropped"}
#: Where triage puts each verdict's files: the published method's folder names.
FOLDER_OF_VERDICT: dict[Verdict, str] = {"2d": "positive", "not2d": "negative", "uncertain": "uncertain"}

#: Media statuses that show their image's route; a pending, failed or skipped media row keeps its own status.
MIRRORING: tuple[MediaStatus, ...] = ("downloaded", *ROUTES)


def media_status(route: Route | None) -> MediaStatus:
    """The status a mirroring media row takes for its image's route (no route yet: downloaded)."""
    return route or "downloaded"


def audit_draw(sha256: str) -> float:
    """A uniform number in [0, 1) fixed by the image's bytes: the audit sample is random across images, yet an
    image re-classified after a crash draws the same number, so the audit decision cannot flip."""
    return int(sha256[:13], 16) / float(16**13)


def is_audit(verdict: Verdict, sha256: str, rate: float) -> bool:
    """Whether a confident verdict is also sent to review, so the feed's precision can be measured unbiased."""
    return verdict != "uncertain" and audit_draw(sha256) < rate


@dataclass(frozen=True)
class Routed:
    """One image's decision and audit draw: what the store records and acts on."""

    image_id: int
    verdict: Verdict
    p_2d: float
    margin: float
    score: float
    audit: bool

    @property
    def route(self) -> Route:
        return ROUTE_OF_VERDICT[self.verdict]

    @property
    def queue_reason(self) -> QueueReason | None:
        """Why the image joins the review queue, or None when it does not."""
        if self.verdict == "uncertain":
            return "uncertain"
        return "audit" if self.audit else None


def route_all(
    image_ids: Sequence[int], sha256s: Sequence[str], decisions: Iterable[Decision], audit_rate: float
) -> list[Routed]:
    """Each image's decision with its audit draw, in order."""
    return [
        Routed(int(i), d.verdict, d.p_2d, d.margin, d.score, is_audit(d.verdict, sha, audit_rate))
        for i, sha, d in zip(image_ids, sha256s, decisions, strict=True)
    ]
