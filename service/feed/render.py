"""What the Atom and JSON feeds share: the feed's description, an image's attachment, an entry's title and HTML.

The renderers know nothing of HTTP: the web face passes absolute URLs (``FeedMeta``) and a function that turns an
image into an ``Attachment`` (the local cache's URL, media type and size), so the same entries can be rendered for
any host or path prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

from markupsafe import Markup, escape

from service.feed.entries import FeedEntry, FeedImage
from service.feed.times import parse_time


@dataclass(frozen=True)
class FeedMeta:
    title: str
    home_url: str  # the web page
    feed_url: str  # this feed's own URL
    next_url: str | None = None  # the next (older) page, if any


@dataclass(frozen=True)
class Attachment:
    url: str
    mime_type: str
    length: int | None


Attach = Callable[[FeedImage], Attachment]


def entry_title(entry: FeedEntry, limit: int = 80) -> str:
    """A one-line title: the author and the start of the text (feed readers list entries by title)."""
    who = entry.author_name or (f"@{entry.author_handle}" if entry.author_handle else "someone")
    text = " ".join((entry.text or "").split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return f"{who}: {text}" if text else f"{who}: {len(entry.images)} image{'s' if len(entry.images) != 1 else ''}"


def entry_html(entry: FeedEntry, attach: Attach) -> str:
    """The entry's text, images (linked to the post) and the model's figures, as escaped HTML."""
    parts: list[str] = []
    if entry.text:
        parts.append(Markup("<p>{}</p>").format(Markup("<br>").join(escape(entry.text).split("\n"))))
    for image in entry.images:
        parts.append(Markup('<p><a href="{}"><img src="{}" alt=""></a></p>').format(
            entry.url or attach(image).url, attach(image).url))
    figures = ", ".join(_figure(image) for image in entry.images)
    credit = f" · retweeted by {', '.join('@' + h for h in entry.reposted_by)}" if entry.reposted_by else ""
    credit += f" · {entry.echo_line()}" if entry.echoes else ""
    parts.append(Markup("<p><small>{}{}</small></p>").format(figures, credit))
    return "".join(str(p) for p in parts)


def entry_text(entry: FeedEntry) -> str:
    return "\n".join(part for part in (entry.text, entry.url) if part)


def rfc3339(value: str | None) -> str | None:
    """A stored time as RFC 3339 in UTC with a Z (what Atom and JSON Feed expect); None when unset or unreadable."""
    if not value:
        return None
    try:
        return parse_time(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


def _figure(image: FeedImage) -> str:
    p = "?" if image.p_2d is None else f"{image.p_2d:.2f}"
    who = "labelled 2D" if image.routed_by == "label" else f"model v{image.model_version}"
    return f"p(2D) {p} ({who})"
