"""The interactive review: one image at a time, one key per answer, every answer stored the moment it is given.

The session is a small state machine (``handle(key)``) over a list of items, so it runs the same under a real
terminal, a pseudo-terminal in the tests, or a plain list of keys. Drawing, opening files and reading keys are
passed in; the session itself only decides what a key means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from service.review import queue
from service.review.queue import ReviewItem, label, undo
from service.store import Store
from service.store.review_queries import UndoError
from service.terminal import clean
from service.words import UNDO_DEPTH

KEYS_LINE = "[a/2] 2D  [x/n] not 2D  [space] skip  [u/⌫] undo  [o] open  [?] help  [q] quit"
HELP = """\
  a or 2       2D: the post goes to the feed
  x or n       not 2D: the post is dropped
  space        skip (it stays in the queue)
  u or ⌫       undo: back to the previous image, its answer taken back (the last 10 stay editable)
  o            open the full image in the browser or viewer
  ?            this help
  q            quit (every answer is already stored)"""
#: The single keys that answer (the review page and `review label` accept the same words).
ANSWERS = {key: label for key, label in queue.ANSWERS.items() if len(key) == 1}
QUIT = {"q", "eof"}


@dataclass
class Decision:
    item: ReviewItem
    label_id: int | None  # None: skipped


@dataclass
class Tally:
    labelled: dict[str, int] = field(default_factory=lambda: {"2d": 0, "not2d": 0})
    skipped: int = 0

    def line(self) -> str:
        n = sum(self.labelled.values())
        return f"labelled {n} ({self.labelled['2d']} 2D, {self.labelled['not2d']} not 2D), skipped {self.skipped}"


class ReviewSession:
    """Walks ``items``; ``draw(item)`` returns the text that shows the image, ``open_item(item)`` a message."""

    def __init__(
        self,
        store: Store,
        items: list[ReviewItem],
        *,
        draw: Callable[[ReviewItem], str] = lambda item: "",
        open_item: Callable[[ReviewItem], str] = lambda item: "cannot open images here",
        refill: Callable[[], list[ReviewItem]] | None = None,
        clear: str = "\x1b[H\x1b[2J",
        author: str | None = None,
    ) -> None:
        self.store = store
        self.items = list(items)
        self.draw = draw
        self.open_item = open_item
        self.refill = refill
        self.clear = clear
        self.author = author
        self.position = 0
        self.history: list[Decision] = []
        self.tally = Tally()
        self.message = ""
        self.show_help = False
        self.done = False

    # --- state ----------------------------------------------------------------------------------------------------

    def current(self) -> ReviewItem | None:
        """The item at the cursor, refreshed from the store; items answered elsewhere meanwhile are passed over."""
        while True:
            if self.position >= len(self.items) and not self._refill():
                return None
            row = self.store.review_item(self.items[self.position].image_id)
            if row is not None and row["resolved_at"] is None:
                self.items[self.position] = ReviewItem.from_row(row)
                return self.items[self.position]
            del self.items[self.position]

    def _refill(self) -> bool:
        """At the end of the list, take items that arrived during the session (never one already shown)."""
        if self.refill is None:
            return False
        seen = {item.image_id for item in self.items}
        fresh = [item for item in self.refill() if item.image_id not in seen]
        self.items.extend(fresh)
        return bool(fresh)

    def handle(self, key: str) -> None:
        """Act on one key press."""
        item = self.current()
        self.message = ""
        if key in QUIT or item is None:
            self.done = True
        elif key in ANSWERS:
            answer = ANSWERS[key]
            label_id = label(self.store, item.image_id, answer, author=self.author)  # committed now
            self.tally.labelled[answer] += 1
            self._advance(Decision(item, label_id))
            self.message = f"image {item.image_id}: {'2D → feed' if answer == '2d' else 'not 2D → dropped'}"
        elif key == "space":
            self.tally.skipped += 1
            self._advance(Decision(item, None))
            self.message = f"image {item.image_id}: skipped"
        elif key in ("u", "backspace"):
            self._undo()
        elif key == "o":
            self.message = self.open_item(item)
        elif key == "?":
            self.show_help = not self.show_help
        else:
            self.message = f"unknown key {key!r}; press ? for help"

    def _advance(self, decision: Decision) -> None:
        self.history = (self.history + [decision])[-UNDO_DEPTH:]
        self.position += 1

    def _undo(self) -> None:
        if not self.history:
            self.message = "nothing to undo" + (f" (only the last {UNDO_DEPTH} answers stay editable)"
                                                if self.position else "")
            return
        decision = self.history[-1]
        if decision.label_id is not None:
            try:
                record = undo(self.store, decision.label_id)
            except UndoError as exc:
                self.history.pop()
                self.message = str(exc)
                return
            self.tally.labelled[record["label"]] -= 1
        else:
            self.tally.skipped -= 1
        self.history.pop()
        self.position -= 1
        self.items[self.position] = decision.item
        self.message = f"image {decision.item.image_id}: answer taken back"

    # --- screen ---------------------------------------------------------------------------------------------------

    def screen(self, width: int = 100) -> str:
        """Everything shown for the current state, image first."""
        item = self.current()
        if item is None:
            return f"{self.clear}The review queue is empty. {self.tally.line()}.\n"
        lines = [self.clear + ("" if self.show_help else self.draw(item))]  # help takes the image's rows
        lines.append(f"[{self.position + 1}/{len(self.items)}]  {self.tally.line()}")
        lines.extend(describe(item, width))
        lines.append(HELP if self.show_help else KEYS_LINE)
        if self.message:  # may quote a URL, a path or an error: cleaned like the item's own text
            lines.append(f"» {clean(self.message)}")
        return "\n".join(lines) + "\n"

    def run(self, next_key: Callable[[], str], write: Callable[[str], None], width: int = 100) -> Tally:
        """Show, read a key, act; until the queue ends, `q`, end of input or Ctrl-C."""
        try:
            while not self.done:
                write(self.screen(width))
                if self.current() is None:
                    break
                self.handle(next_key())
        except KeyboardInterrupt:
            pass
        return self.tally


def describe(item: ReviewItem, width: int) -> list[str]:
    """The text lines under the image: who posted it, what they wrote, the link, and why it is asked. Every field
    from the timeline is cleaned of terminal escapes and control characters (``service.terminal.clean``)."""
    handle = clean(item.author_handle)
    who = " ".join(x for x in (clean(item.author_name), f"@{handle}" if handle else None) if x)
    text = " ".join(clean(item.text).split())
    if len(text) > 2 * width:
        text = text[: 2 * width - 1] + "…"
    why = "audit (a confident verdict, checked to measure the feed)" if item.reason == "audit" else "uncertain"
    p = "—" if item.p_2d is None else f"{item.p_2d:.2f}"
    m = "—" if item.margin is None else f"{item.margin:.2f}"
    return [
        f"{who or 'unknown author'}: {text}" if text else (who or "unknown author"),
        clean(item.post_url or item.url),
        f"p(2D) {p}   margin {m}   why: {why}   (image {item.image_id}, model v{item.model_version})",
    ]
