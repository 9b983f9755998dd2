"""The words of the house, each defined once (the "Words" of DESIGN.md).

Every part that speaks of a verdict, a label, a route or a media status imports the word from here; the store's
CHECK constraints spell the same values, and ``tests/test_words.py`` holds the two together.
"""

from __future__ import annotations

from typing import Literal, get_args

#: What a model and a rule say of one image.
Verdict = Literal["2d", "not2d", "uncertain"]
#: A person's answer for one image: the source of truth for training.
Label = Literal["2d", "not2d"]
#: Which uncertainty score a reject rule thresholds.
ScoreKind = Literal["margin", "least_confident", "entropy"]
#: Where an image went after its verdict or label.
Route = Literal["feed", "review", "dropped"]
#: Who set an image's route: the model at first sight, a person, or a retrained model re-scoring the queue.
RoutedBy = Literal["model", "label", "auto"]
#: Why an image is in the review queue.
QueueReason = Literal["uncertain", "audit"]
#: A media row's stage: before a verdict (pending, downloaded, failed, skipped), then its image's route.
MediaStatus = Literal["pending", "downloaded", "feed", "review", "dropped", "failed", "skipped"]
#: What a source says an attached media is.
MediaKind = Literal["photo", "video", "animated_gif", "file"]
#: Where a label came from.
LabelSource = Literal["review", "import", "folder", "web", "cli"]

VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
LABELS: tuple[Label, ...] = get_args(Label)
SCORE_KINDS: tuple[ScoreKind, ...] = get_args(ScoreKind)
ROUTES: tuple[Route, ...] = get_args(Route)
ROUTED_BY: tuple[RoutedBy, ...] = get_args(RoutedBy)
QUEUE_REASONS: tuple[QueueReason, ...] = get_args(QueueReason)
MEDIA_STATUSES: tuple[MediaStatus, ...] = get_args(MediaStatus)

#: Column order of every (n, 2) probability array: index 1 is "2d".
CLASSES: tuple[Label, Label] = ("not2d", "2d")

#: File suffixes read as images from folders: those of the formats the decoder accepts (JPEG, PNG, WebP, GIF;
#: ``features.images.ACCEPTED_FORMATS``), which still decides by content, whatever a file is named.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})

#: How many of the latest review answers stay undoable.
UNDO_DEPTH = 10
