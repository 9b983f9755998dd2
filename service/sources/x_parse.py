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

**Answers are untrusted: shapes are checked before anything is read**, at two levels:

* *the page itself* is malformed, and the whole answer is refused with a one-line ``SourceError`` (retry in a
  minute; the cursor does not move, so nothing is skipped): the body is not an object; ``data``, ``includes``,
  ``includes.media|users|tweets``, ``meta`` or ``errors`` has the wrong JSON type; ``meta.newest_id`` is not a
  tweet id or ``meta.next_token`` not a string; or the page holds more posts than were asked for (``max_posts``,
  the request's ``max_results``; and at most 3 referenced posts per post), which would be stored and billed;
* *one item* is malformed, and only that item is left out, with its reason logged and added to ``Page.errors``:
  a post of ``data`` that is not an object, whose ``id`` is not a tweet id (``^[0-9]{1,19}$``, a string), or
  one of whose fields read here has the wrong type (``text``, ``created_at`` (ISO 8601), ``author_id``,
  ``referenced_tweets``, ``attachments.media_keys``, ``entities.urls``) is skipped and the others go on; an item
  of ``includes`` with a wrong shape (a media item whose ``media_key``, ``type``, ``url``,
  ``preview_image_url``, ``width``, ``height`` or ``alt_text`` is mistyped; a user whose ``id`` is not an id or
  whose ``username`` is not a handle; a referenced post checked as a post) is ignored, as if the answer had left
  it out (its post keeps what else it has). Fields not read here are not checked. Whether a URL may be fetched
  is not decided here: the downloader decides (http(s) only for remote media).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.sources import MediaRef, OriginalPost, Page, Post, SourceError
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


#: Referenced posts one post may bring into ``includes.tweets`` (replied to, quoted, retweeted): the page cap on them.
MAX_REFERENCED_PER_POST = 3
_ID = re.compile(r"^[0-9]{1,19}$")
_HANDLE = re.compile(r"^[A-Za-z0-9_]{1,50}$")
_TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})$"
)
_MAX_TOKEN_CHARS = 1000
_MAX_REASON_CHARS = 200


class Malformed(ValueError):
    """One item of an answer has the wrong shape; the message says what (one line)."""


@dataclass(frozen=True)
class TimelineAnswer:
    """One checked timeline answer: its ``Page``, the ``next_token`` to the next page, and how many posts ``data``
    held (skipped ones included: they were billed)."""

    page: Page
    next_token: str | None
    count: int


def parse_page(body: object, *, max_posts: int | None = None) -> Page:
    """One timeline answer as a ``Page`` (see the module docstring for what is refused or skipped)."""
    return parse_answer(body, max_posts=max_posts).page


def parse_answer(body: object, *, max_posts: int | None = None) -> TimelineAnswer:
    """One timeline answer, checked: raises ``SourceError`` when the page itself is malformed or holds more than
    ``max_posts`` posts; skips (and reports) malformed items."""
    if not isinstance(body, dict):
        raise _refused(f"the answer is {_kind(body)}, expected an object")
    data = _list(body, "data")
    includes = _object(body, "includes")
    meta = _object(body, "meta")
    raw_errors = _list(body, "errors")
    if max_posts is not None and len(data) > max_posts:
        raise _refused(f"{len(data)} posts on a page of at most {max_posts} (max_results): refused, not stored",
                       retry_after=300)
    included = {name: _list(includes, name, where="includes.") for name in ("media", "users", "tweets")}
    if max_posts is not None and len(included["tweets"]) > MAX_REFERENCED_PER_POST * max_posts:
        raise _refused(f"{len(included['tweets'])} referenced posts for a page of at most {max_posts} posts: "
                       "refused, not stored", retry_after=300)
    token = meta.get("next_token")
    if token is not None and not (isinstance(token, str) and 0 < len(token) <= _MAX_TOKEN_CHARS):
        raise _refused(f"meta.next_token is {_kind(token)}, expected a pagination token")
    newest_id = meta.get("newest_id")
    if newest_id is not None and not _is_id(newest_id):
        raise _refused(f"meta.newest_id is {_shown(newest_id)}, expected a tweet id")

    errors = [describe_error(e) for e in raw_errors]
    if errors:
        log.warning("X API partial errors beside data (data used): %s", "; ".join(errors))
    media = _indexed(included["media"], "includes.media", check_media, "media_key")
    users = _indexed(included["users"], "includes.users", check_user, "id")
    referenced = _indexed(included["tweets"], "includes.tweets", check_tweet, "id")
    tweets = []
    for position, tweet in enumerate(data):
        try:
            check_tweet(tweet)
        except Malformed as exc:
            reason = f"post {_item_name(tweet, position)} skipped: {exc}"
            log.warning("X API answer: %s", reason)
            errors.append(reason)
            continue
        tweets.append(tweet)
    for tweet in tweets:  # a referenced post that is itself on the page is found there too
        referenced.setdefault(tweet["id"], tweet)
    posts = [parse_post(tweet, media, users, referenced) for tweet in tweets]
    if newest_id is None and posts:
        newest_id = max((p.id for p in posts), key=int)
        log.warning("X API answer without meta.newest_id; using the newest post's id %s", newest_id)
    reads = len(data) + len(included["tweets"])
    page = Page(posts=posts, newest_id=newest_id, reads=reads, errors=errors)
    return TimelineAnswer(page=page, next_token=token, count=len(data))


# --- shapes ------------------------------------------------------------------------------------------------------


def check_tweet(tweet: object) -> None:
    """Raise ``Malformed`` unless ``tweet`` is a post whose fields read here have the right types."""
    if not isinstance(tweet, dict):
        raise Malformed(f"is {_kind(tweet)}, expected an object")
    if not _is_id(tweet.get("id")):
        raise Malformed(f"id is {_shown(tweet.get('id'))}, expected a tweet id")
    _optional(tweet, "text", str)
    created_at = _optional(tweet, "created_at", str)
    if created_at is not None and not _TIMESTAMP.match(created_at):
        raise Malformed(f"created_at is {_shown(created_at)}, expected an ISO 8601 time")
    author_id = tweet.get("author_id")
    if author_id is not None and not _is_id(author_id):
        raise Malformed(f"author_id is {_shown(author_id)}, expected a user id")
    for ref in _optional(tweet, "referenced_tweets", list) or []:
        if not isinstance(ref, dict):
            raise Malformed(f"an item of referenced_tweets is {_kind(ref)}, expected an object")
        _optional(ref, "type", str, "referenced_tweets[].type")
        if not _is_id(ref.get("id")):
            raise Malformed(f"referenced_tweets[].id is {_shown(ref.get('id'))}, expected a tweet id")
    attachments = _optional(tweet, "attachments", dict)
    if attachments is not None:
        for key in _optional(attachments, "media_keys", list, "attachments.media_keys") or []:
            if not (isinstance(key, str) and key):
                raise Malformed(f"an item of attachments.media_keys is {_shown(key)}, expected a media key")
    entities = _optional(tweet, "entities", dict)
    if entities is not None:
        for url in _optional(entities, "urls", list, "entities.urls") or []:
            if not isinstance(url, dict):
                raise Malformed(f"an item of entities.urls is {_kind(url)}, expected an object")
            _optional(url, "url", str, "entities.urls[].url")
            _optional(url, "media_key", str, "entities.urls[].media_key")


def check_media(item: object) -> None:
    """Raise ``Malformed`` unless ``item`` is a media object of ``includes.media`` with well-typed fields."""
    if not isinstance(item, dict):
        raise Malformed(f"is {_kind(item)}, expected an object")
    key = item.get("media_key")
    if not (isinstance(key, str) and key):
        raise Malformed(f"media_key is {_shown(key)}, expected a media key")
    for name in ("type", "url", "preview_image_url", "alt_text"):
        _optional(item, name, str)
    for name in ("width", "height"):
        value = item.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise Malformed(f"{name} is {_shown(value)}, expected a whole number of pixels")


def check_user(user: object) -> None:
    """Raise ``Malformed`` unless ``user`` is a user object of ``includes.users`` with well-typed fields."""
    if not isinstance(user, dict):
        raise Malformed(f"is {_kind(user)}, expected an object")
    if not _is_id(user.get("id")):
        raise Malformed(f"id is {_shown(user.get('id'))}, expected a user id")
    _optional(user, "name", str)
    username = _optional(user, "username", str)
    if username is not None and not _HANDLE.match(username):
        raise Malformed(f"username is {_shown(username)}, expected a handle")
    _optional(user, "profile_image_url", str)


def _indexed(
    items: list[Any], where: str, check: Callable[[object], None], key: str
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for position, item in enumerate(items):
        try:
            check(item)
        except Malformed as exc:
            log.warning("X API answer: item %s of %s ignored: %s", _item_name(item, position, key), where, exc)
            continue
        found.setdefault(item[key], item)
    return found


def _optional(obj: dict[str, Any], name: str, kind: type, label: str | None = None) -> Any:
    value = obj.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        raise Malformed(f"{label or name} is {_kind(value)}, expected {_KIND_NAMES.get(kind, kind.__name__)}")
    return value


def _list(obj: dict[str, Any], name: str, *, where: str = "") -> list[Any]:
    value = obj.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _refused(f"{where}{name} is {_kind(value)}, expected a list")
    return value


def _object(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _refused(f"{name} is {_kind(value)}, expected an object")
    return value


def _refused(problem: str, *, retry_after: float = 60) -> SourceError:
    return SourceError(f"X API timeline answer malformed: {problem}"[:_MAX_REASON_CHARS * 2], retry_after=retry_after)


def _is_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


_KIND_NAMES: dict[type, str] = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
                                int: "a number", float: "a number"}


def _kind(value: object) -> str:
    """The JSON type of ``value``, in words."""
    if value is None:
        return "null"
    for kind in (bool, dict, list, str, int, float):
        if isinstance(value, kind):
            return _KIND_NAMES[kind]
    return type(value).__name__


def _shown(value: object) -> str:
    """``value`` for a one-line message: short strings quoted, anything else by its JSON type."""
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:40] + "..."
        return repr(text.replace("\n", " ").replace("\r", " "))
    if value is None:
        return "missing"
    return _kind(value)


def _item_name(item: object, position: int, key: str = "id") -> str:
    """How a log line names an item: its id (or media key) when that is sound, else its position."""
    value = item.get(key) if isinstance(item, dict) else None
    if _is_id(value) or key != "id" and isinstance(value, str) and 0 < len(value) <= 40 and value.isprintable():
        return str(value)
    return f"#{position + 1}"


def describe_error(error: object) -> str:
    """One partial error of an answer as a line: title, detail, and the resource it concerns."""
    if not isinstance(error, dict):
        return f"error: {str(error)[:_MAX_REASON_CHARS]}"
    title = error.get("title") or "error"
    detail = error.get("detail") or error.get("message") or ""
    resource = error.get("resource_id") or error.get("value")
    text = f"{title}: {detail}" if detail else f"{title}"
    if resource and str(resource) not in text:
        text += f" ({error.get('resource_type', 'resource')} {resource})"
    return " ".join(text.split())[: _MAX_REASON_CHARS * 2]  # one line, whatever the answer put in it


def parse_post(
    tweet: dict[str, Any],
    media: dict[str, dict[str, Any]],
    users: dict[str, dict[str, Any]],
    referenced: dict[str, dict[str, Any]],
) -> Post:
    """One post of ``data`` (checked by ``check_tweet``), given the answer's ``includes`` indexed by media key, user
    id and post id (their items checked likewise)."""
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


__all__ = ["MAX_REFERENCED_PER_POST", "QUERY", "Malformed", "TimelineAnswer", "check_media", "check_tweet",
           "check_user", "describe_error", "media_refs", "original_post", "parse_answer", "parse_page", "parse_post",
           "post_text", "status_url"]
