"""X API v2 timeline answers (parsed JSON) as ``Page``s of ``Post``s: pure functions, no I/O.

``QUERY`` is what every timeline request must ask for, because it is what these functions read: the expansions
that bring referenced posts, their media and their authors into ``includes``, and the fields used below.

How posts are built:

* a post: its own text (HTML entities unescaped, the trailing ``https://t.co/...`` media link removed), author,
  URL ``https://x.com/<handle>/status/<id>``, and its own media;
* a **retweet**: the timeline entry is the retweet, so ``id``, ``created_at`` and ``author_*`` are the
  retweet's (who put it in the timeline); ``text`` is ``RT @<original handle>: <original text>`` (the
  original's full text, not the API's truncated copy); ``media`` are the original's; ``url`` is the original's
  status URL (the content's canonical link); ``via="retweet"``, ``via_id`` = the original's id; and
  ``original`` is the original (``OriginalPost``: id, text, URL, ``created_at`` and author);
* a **quote**: the quoting post's own text, author and URL; ``media`` = its own followed by the quoted post's;
  ``via="quote"``/``via_id`` = the quoted post when any media came from it; ``original`` = the quoted post;
* a referenced post missing from ``includes`` (deleted, protected: the answer lists it in ``errors``): the post
  keeps its own media, ``original`` is None, and a retweet still says ``via="retweet"`` with the original's id;
* replies are ordinary posts (the replied-to post's media are not shown);
* videos and GIFs: ``MediaRef(kind="video"|"animated_gif", url=None, preview_url=preview_image_url)``;
* ``raw``: ``{"tweet": <the post's JSON>}``, plus ``"referenced": <the retweeted/quoted post's JSON>`` when
  there is one: the API's own words, which the store keeps so a later migration can backfill without re-fetching
  (X serves only the newest 800 posts).

``Page.reads`` = posts in ``data`` + referenced posts in ``includes.tweets`` (both are billed). Partial
``errors`` beside ``data`` are described in ``Page.errors`` and logged; the data is used.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from service.sources import MediaRef, OriginalPost, Page, Post
from service.words import MediaKind

log = logging.getLogger(__name__)

EXPANSIONS = (
    "attachments.media_keys",
    "referenced_tweets.id",
    "referenced_tweets.id.attachments.media_keys",
    "author_id",
    "referenced_tweets.id.author_id",
)
TWEET_FIELDS = ("created_at", "author_id", "referenced_tweets", "attachments", "entities", "conversation_id", "lang")
MEDIA_FIELDS = ("media_key", "type", "url", "preview_image_url", "width", "height", "alt_text")
USER_FIELDS = ("name", "username", "profile_image_url")
#: The query parameters a timeline request needs for ``parse_page`` to find everything it reads.
QUERY: dict[str, str] = {
    "expansions": ",".join(EXPANSIONS),
    "tweet.fields": ",".join(TWEET_FIELDS),
    "media.fields": ",".join(MEDIA_FIELDS),
    "user.fields": ",".join(USER_FIELDS),
}

_MEDIA_KINDS: dict[str, MediaKind] = {"photo": "photo", "video": "video", "animated_gif": "animated_gif"}
_REFERENCES = (("retweet", "retweeted"), ("quote", "quoted"))  # a post that both retweets and quotes is a retweet


def parse_page(body: dict[str, Any]) -> Page:
    """One timeline answer as a ``Page``."""
    data = body.get("data") or []
    includes = body.get("includes") or {}
    media = {m.get("media_key"): m for m in includes.get("media") or [] if m.get("media_key")}
    users = {u.get("id"): u for u in includes.get("users") or [] if u.get("id")}
    referenced = {t.get("id"): t for t in includes.get("tweets") or [] if t.get("id")}
    errors = [describe_error(e) for e in body.get("errors") or []]
    if errors:
        log.warning("X API partial errors beside data (data used): %s", "; ".join(errors))
    for tweet in data:  # a referenced post that is itself on the page is found there too
        referenced.setdefault(tweet.get("id"), tweet)
    posts = [parse_post(tweet, media, users, referenced) for tweet in data]
    meta = body.get("meta") or {}
    reads = len(data) + len(includes.get("tweets") or [])
    return Page(posts=posts, newest_id=meta.get("newest_id"), reads=reads, errors=errors)


def describe_error(error: dict[str, Any]) -> str:
    """One partial error of an answer as a line: title, detail, and the resource it concerns."""
    title = error.get("title") or "error"
    detail = error.get("detail") or error.get("message") or ""
    resource = error.get("resource_id") or error.get("value")
    text = f"{title}: {detail}" if detail else title
    if resource and str(resource) not in text:
        text += f" ({error.get('resource_type', 'resource')} {resource})"
    return text


def parse_post(
    tweet: dict[str, Any],
    media: dict[str, dict[str, Any]],
    users: dict[str, dict[str, Any]],
    referenced: dict[str, dict[str, Any]],
) -> Post:
    """One post of ``data``, given the answer's ``includes`` indexed by media key, user id and post id."""
    tweet_id = str(tweet["id"])
    author = users.get(tweet.get("author_id") or "") or {}
    handle = author.get("username")
    refs = {r.get("type"): str(r.get("id")) for r in tweet.get("referenced_tweets") or []}
    own = media_refs(tweet, media)
    text = post_text(tweet)
    url = status_url(handle, tweet_id)
    via = via_id = None
    original: OriginalPost | None = None
    raw: dict[str, Any] = {"tweet": tweet}
    shown = own
    for kind, ref_type in _REFERENCES:
        if ref_type not in refs:
            continue
        ref_id = refs[ref_type]
        theirs_json = referenced.get(ref_id)
        if theirs_json is None:
            log.warning("post %s %ss %s, which the answer does not include; its media are unknown",
                        tweet_id, kind, ref_id)
            if kind == "retweet":
                via, via_id = kind, ref_id
            continue
        raw["referenced"] = theirs_json
        original = original_post(ref_id, theirs_json, users)
        theirs = media_refs(theirs_json, media)
        if kind == "retweet":
            shown = theirs
            via, via_id = kind, ref_id
            url = original.url
            if original.author_handle:
                text = f"RT @{original.author_handle}: {original.text}"
        else:
            shown = own + tuple(m for m in theirs if m.media_key not in {o.media_key for o in own})
            if theirs:
                via, via_id = kind, ref_id
        break
    return Post(
        id=tweet_id,
        text=text,
        created_at=tweet.get("created_at"),
        url=url,
        author_id=tweet.get("author_id"),
        author_name=author.get("name"),
        author_handle=handle,
        author_avatar=author.get("profile_image_url"),
        media=shown,
        via=via,
        via_id=via_id,
        original=original,
        raw=raw,
    )


def original_post(post_id: str, tweet: dict[str, Any], users: dict[str, dict[str, Any]]) -> OriginalPost:
    """A referenced post (from ``includes.tweets`` or the page itself) with its author from ``includes.users``."""
    author = users.get(tweet.get("author_id") or "") or {}
    return OriginalPost(
        id=post_id,
        text=post_text(tweet),
        url=status_url(author.get("username"), post_id),
        created_at=tweet.get("created_at"),
        author_id=tweet.get("author_id"),
        author_name=author.get("name"),
        author_handle=author.get("username"),
        author_avatar=author.get("profile_image_url"),
    )


def status_url(handle: str | None, tweet_id: str) -> str:
    """A post's canonical link; without the handle, the link X redirects from any id."""
    return f"https://x.com/{handle}/status/{tweet_id}" if handle else f"https://x.com/i/web/status/{tweet_id}"


def post_text(tweet: dict[str, Any]) -> str:
    """The text without the trailing media link, HTML entities unescaped (the API escapes & < >)."""
    text = tweet.get("text") or ""
    for url in (tweet.get("entities") or {}).get("urls") or []:
        link = url.get("url")
        if url.get("media_key") and link and text.rstrip().endswith(link):
            text = text.rstrip()[: -len(link)]
    return html.unescape(text).rstrip()


def media_refs(tweet: dict[str, Any], media: dict[str, dict[str, Any]]) -> tuple[MediaRef, ...]:
    """The post's attached media, in order; videos and GIFs by their preview image, unknown kinds skipped."""
    refs = []
    for key in (tweet.get("attachments") or {}).get("media_keys") or []:
        item = media.get(key)
        if item is None:
            log.warning("media %s of post %s is missing from includes.media", key, tweet.get("id"))
            continue
        kind = _MEDIA_KINDS.get(item.get("type") or "photo")
        if kind is None:
            log.info("media %s has an unknown type %r; skipped", key, item.get("type"))
            continue
        refs.append(
            MediaRef(
                media_key=str(key),
                kind=kind,
                url=item.get("url") if kind == "photo" else None,
                preview_url=item.get("preview_image_url"),
                width=item.get("width"),
                height=item.get("height"),
                alt_text=item.get("alt_text"),
            )
        )
    return tuple(refs)


__all__ = ["QUERY", "describe_error", "media_refs", "original_post", "parse_page", "parse_post", "post_text",
           "status_url"]
