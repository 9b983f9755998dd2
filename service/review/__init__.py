"""The review queue: images the model was unsure of (and an audit sample of sure ones), waiting for a person.

``queue`` orders items and stores answers (with undo); ``session`` is the interactive terminal loop, drawing
images with ``graphics`` and reading single keys with ``keys``; ``exchange`` exports the queue to a folder and
imports answers sorted into ``2d/`` and ``not2d/``; ``report`` and ``page`` measure what the answers say.
"""

from service.review.queue import ReviewItem, UndoError, interleave, label, open_items, parse_label, resolve, undo

__all__ = ["ReviewItem", "UndoError", "interleave", "label", "open_items", "parse_label", "resolve", "undo"]
