"""The feed as Atom 1.0 (RFC 4287), images as ``rel="enclosure"`` links, paged with RFC 5005's ``rel="next"``.

Every text and attribute goes through ``xml_chars``: post text may hold characters XML 1.0 forbids (most C0
controls, lone surrogates, U+FFFE/U+FFFF), which no escaping can carry, and one of them makes the whole feed
not well-formed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from service.feed.entries import FeedEntry
from service.feed.render import Attach, FeedMeta, entry_html, entry_title, rfc3339

NS = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml; charset=utf-8"
#: What XML 1.0 (§2.2 Char) does not allow anywhere in a document.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_chars(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids."""
    return _NOT_XML.sub("", text)


def entry_id(entry: FeedEntry) -> str:
    """A permanent IRI per entry: the same content keeps its id whichever post brought it (a retweet or not)."""
    return f"urn:nijifeed:post:{quote(entry.id, safe='')}"


def render_atom(entries: Sequence[FeedEntry], meta: FeedMeta, attach: Attach) -> bytes:
    ET.register_namespace("", NS)
    feed = ET.Element(_q("feed"))
    _text(feed, "id", f"urn:nijifeed:feed:{quote(meta.home_url, safe='')}")
    _text(feed, "title", meta.title)
    updated = max((rfc3339(e.created_at) or "" for e in entries), default="")
    _text(feed, "updated", updated or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    _link(feed, "self", meta.feed_url, "application/atom+xml")
    _link(feed, "alternate", meta.home_url, "text/html")
    if meta.next_url:
        _link(feed, "next", meta.next_url, "application/atom+xml")
    author = ET.SubElement(feed, _q("author"))
    _text(author, "name", "nijifeed")
    _text(feed, "generator", "nijifeed")
    for entry in entries:
        _entry(feed, entry, attach)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _entry(feed: ET.Element, entry: FeedEntry, attach: Attach) -> None:
    node = ET.SubElement(feed, _q("entry"))
    _text(node, "id", entry_id(entry))
    _text(node, "title", entry_title(entry))
    when = rfc3339(entry.created_at) or rfc3339(entry.entered_at) or "1970-01-01T00:00:00Z"
    _text(node, "published", when)
    _text(node, "updated", when)
    author = ET.SubElement(node, _q("author"))
    _text(author, "name", entry.author_name or entry.author_handle or "unknown")
    if entry.author_handle:
        _text(author, "uri", f"https://x.com/{quote(entry.author_handle)}")
    if entry.url:
        _link(node, "alternate", entry.url, "text/html")
    for image in entry.images:
        attachment = attach(image)
        link = _link(node, "enclosure", attachment.url, attachment.mime_type)
        if attachment.length:
            link.set("length", str(attachment.length))
    content = _text(node, "content", entry_html(entry, attach))
    content.set("type", "html")


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    node = ET.SubElement(parent, _q(tag))
    node.text = xml_chars(text)
    return node


def _link(parent: ET.Element, rel: str, href: str, media_type: str) -> ET.Element:
    return ET.SubElement(parent, _q("link"), {"rel": rel, "href": xml_chars(href), "type": xml_chars(media_type)})
