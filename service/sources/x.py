"""The X home timeline (API v2) as a Source, through tweepy's ``Client``.

* **Auth**: OAuth 1.0a user context (consumer key/secret + access token/secret; preferred when all four are set)
  or an OAuth 2.0 *user* access token (``bearer_token``, sent with ``user_auth=False``). An app-only bearer
  token cannot read a home timeline; the API answers 403 and the error says so.
* **One place for the host and the timeout**: ``client.session`` is an ``_ApiSession`` (a ``requests.Session``)
  that rewrites the ``https://api.twitter.com`` prefix tweepy hard-codes to ``api_base_url`` and gives every
  call a timeout (tweepy sets none). The OAuth 1.0a signature is computed for the URL actually requested.
* **Pages**: newest first, following ``meta.next_token`` back to ``since_id`` (exclusive) for at most
  ``max_pages`` pages of ``max_results`` posts. The user id comes from ``GET /2/users/me`` once (cached).
* **Gaps**: the API silently clamps ``since_id`` to its window (7 days / 800 newest posts). A gap is reported
  (a WARNING on this module's logger with ``extra={"gap": reason}``, ``page.gap`` set to the reason on the page
  where it was found, and ``XSource.last_gap``) when ``since_id`` is older than 7 days (tweet ids are
  snowflakes: ms = (id >> 22) + 1288834974657), when ``max_pages`` stopped pagination while ``next_token`` was
  still there, or when a poll read as many posts as the window holds (800). A first poll (no ``since_id``) has
  no gap by definition. (The API gives a full last page a ``next_token`` even when nothing follows, so a poll
  whose new posts fill exactly ``max_pages`` pages reports a gap that may not be one: erring on the safe side.)
* **Errors**: 429 → ``SourceError(retry_after=seconds until x-rate-limit-reset)`` at once, never sleeping;
  5xx, timeouts and connection errors → up to ``retries`` retries with exponential backoff and jitter, slept on
  ``stop`` (a ``threading.Event``: setting it ends the wait and the poll) or an injected ``sleep``, then
  ``SourceError(retry_after=...)``; 401/403 → ``SourceError(fatal=True)`` with what the API said and what to
  check; partial ``errors`` beside ``data`` → logged, listed in ``Page.errors``, the data used.
* **Reads**: ``Page.reads`` = posts in ``data`` + referenced posts in ``includes.tweets`` (both are billed).
* **Secrets** never reach logs, exceptions or reprs: they live only in the tweepy client, and a filter on the
  loggers of tweepy, requests-oauthlib and oauthlib (whose DEBUG output includes headers) masks them.

How posts are built (``Post``):

* a post: its own text (HTML entities unescaped, the trailing ``https://t.co/...`` media link removed), author,
  URL ``https://x.com/<handle>/status/<id>``, and its own media;
* a **retweet**: the timeline entry is the retweet, so ``id``, ``created_at`` and ``author_*`` are the
  retweet's (who put it in the timeline); ``text`` is ``RT @<original handle>: <original text>`` (the
  original's full text, not the API's truncated copy); ``media`` are the original's; ``url`` is the original's
  status URL (the content's canonical link); ``via="retweet"``, ``via_id`` = the original's id; and
  ``raw["original"]`` holds the original's id, text, URL, ``created_at`` and author (id, name, handle, avatar);
* a **quote**: the quoting post's own text, author and URL; ``media`` = its own followed by the quoted post's;
  ``via="quote"``/``via_id`` = the quoted post when any media came from it; ``raw["original"]`` as above;
* replies are ordinary posts (the replied-to post's media are not shown);
* videos and GIFs: ``MediaRef(kind="video"|"animated_gif", url=None, preview_url=preview_image_url)``.
"""

from __future__ import annotations

import html
import logging
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import requests
import tweepy

from service.sources import MediaRef, Page, Post, SourceError

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://api.twitter.com"
TWITTER_EPOCH_MS = 1288834974657
WINDOW_DAYS = 7.0
WINDOW_POSTS = 800
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
_ID = re.compile(r"^[0-9]{1,19}$")


def snowflake_ms(tweet_id: str | int) -> int:
    """The creation time (Unix ms) encoded in a tweet id."""
    return (int(tweet_id) >> 22) + TWITTER_EPOCH_MS


def _secret(value: object) -> str | None:
    """A plain string from a str or a pydantic ``SecretStr`` (or None/empty → None)."""
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    text = getter() if callable(getter) else str(value)
    return text.strip() or None


# --- keeping secrets out of logs ---------------------------------------------------------------------------------


class _Redactor(logging.Filter):
    """Masks registered secret strings in records of the loggers that print request headers at DEBUG."""

    LOGGERS = (
        "tweepy",
        "tweepy.client",
        "requests_oauthlib",
        "requests_oauthlib.oauth1_auth",
        "oauthlib",
        "oauthlib.oauth1.rfc5849",
        "oauthlib.oauth1.rfc5849.signature",
        "urllib3.connectionpool",
        __name__,
    )

    def __init__(self) -> None:
        super().__init__("nijifeed-redactor")
        self._owners: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._installed = False

    def register(self, owner: object, secrets: tuple[str, ...]) -> None:
        with self._lock:
            self._owners[owner] = tuple(s for s in secrets if s)
            if not self._installed:
                for name in self.LOGGERS:
                    logging.getLogger(name).addFilter(self)
                self._installed = True

    def secrets(self) -> list[str]:
        with self._lock:
            found = {s for group in self._owners.values() for s in group}
        return sorted(found, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets():
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is not ours to fix; still mask the raw parts
            message = f"{record.msg} {record.args}"
        cleaned = message
        for secret in secrets:
            cleaned = cleaned.replace(secret, "***")
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


REDACTOR = _Redactor()


# --- the one place where the API host and the timeout are set ----------------------------------------------------


class _ApiSession(requests.Session):
    """tweepy's session: every ``https://api.twitter.com`` URL goes to ``base_url``, every call has a timeout."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if isinstance(url, str) and url.startswith(DEFAULT_API_BASE_URL):
            url = self.base_url + url[len(DEFAULT_API_BASE_URL) :]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


# --- the source ----------------------------------------------------------------------------------------------------


class XSource:
    """The authenticated user's home timeline as pages of ``Post`` (see the module docstring)."""

    name = "x"

    def __init__(
        self,
        *,
        consumer_key: object = None,
        consumer_secret: object = None,
        access_token: object = None,
        access_token_secret: object = None,
        bearer_token: object = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        max_results: int = 100,
        max_pages: int = 8,
        timeout: float = 15.0,
        retries: int = 3,
        backoff: float = 1.0,
        backoff_max: float = 60.0,
        window_posts: int = WINDOW_POSTS,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        """Credentials may be ``str`` or pydantic ``SecretStr``. ``timeout`` (seconds) applies to every call;
        ``retries``/``backoff``/``backoff_max``: retries of 5xx/timeouts/connection errors, waiting
        ``min(backoff_max, backoff * 2**n)`` scaled by a random factor in [0.5, 1); ``stop``: setting it ends a
        backoff wait at once (the poll then fails with a non-fatal ``SourceError``); ``sleep``: replaces the wait
        (tests). Raises ``SourceError(fatal=True)`` when the credentials are missing or incomplete."""
        if not 5 <= max_results <= 100:
            raise ValueError("max_results must be between 5 and 100 (the API's bounds)")
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        oauth1 = {
            "consumer_key": _secret(consumer_key),
            "consumer_secret": _secret(consumer_secret),
            "access_token": _secret(access_token),
            "access_token_secret": _secret(access_token_secret),
        }
        bearer = _secret(bearer_token)
        given = [k for k, v in oauth1.items() if v]
        REDACTOR.register(self, tuple(v for v in (*oauth1.values(), bearer) if v))
        if len(given) == 4:
            self.auth_mode = "oauth1"
            user_auth = True
        elif bearer:
            self.auth_mode = "oauth2-user"
            user_auth = False
            if given:
                log.warning("incomplete OAuth 1.0a credentials (%s set) ignored; using the OAuth 2.0 user token",
                            ", ".join(given))
        elif given:
            missing = [f"NIJIFEED_X_{k.upper()}" for k, v in oauth1.items() if not v]
            raise SourceError(f"incomplete X OAuth 1.0a credentials: {', '.join(missing)} not set", fatal=True)
        else:
            raise SourceError(
                "no X credentials: set NIJIFEED_X_CONSUMER_KEY, NIJIFEED_X_CONSUMER_SECRET, NIJIFEED_X_ACCESS_TOKEN "
                "and NIJIFEED_X_ACCESS_TOKEN_SECRET (OAuth 1.0a user context), or NIJIFEED_X_BEARER_TOKEN (an "
                "OAuth 2.0 user access token)",
                fatal=True,
            )
        self._user_auth = user_auth
        client = tweepy.Client(
            bearer_token=None if user_auth else bearer,
            return_type=requests.Response,
            wait_on_rate_limit=False,
            **(oauth1 if user_auth else {}),
        )
        client.session = _ApiSession(api_base_url, timeout)
        self._client = client
        self.api_base_url = api_base_url.rstrip("/")
        self.max_results = max_results
        self.max_pages = max_pages
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.window_posts = window_posts
        self._stop = stop or threading.Event()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._user_id: str | None = None
        self._user_handle: str | None = None
        self.last_gap: str | None = None
        self.rate_limit: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Any, *, stop: threading.Event | None = None, **overrides: Any) -> XSource:
        """Build from ``service.config.Settings`` (fields ``x_*`` and ``http_timeout``)."""
        kwargs: dict[str, Any] = {
            "consumer_key": settings.x_consumer_key,
            "consumer_secret": settings.x_consumer_secret,
            "access_token": settings.x_access_token,
            "access_token_secret": settings.x_access_token_secret,
            "bearer_token": settings.x_bearer_token,
            "api_base_url": settings.x_api_base_url,
            "max_results": settings.x_max_results,
            "max_pages": settings.x_max_pages,
            "timeout": settings.http_timeout,
            "retries": getattr(settings, "x_retries", 3),
            "backoff": getattr(settings, "x_backoff", 1.0),
            "stop": stop,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def __repr__(self) -> str:
        return f"XSource(api_base_url={self.api_base_url!r}, auth={self.auth_mode!r}, user_id={self._user_id!r})"

    # --- the user --------------------------------------------------------------------------------------------------

    def user_id(self) -> str:
        """The authenticated user's id, from ``GET /2/users/me`` once."""
        if self._user_id is None:
            response = self._call("GET /2/users/me", lambda: self._client.get_me(user_auth=self._user_auth))
            data = self._json(response, "GET /2/users/me").get("data") or {}
            if not data.get("id"):
                raise SourceError("GET /2/users/me answered without a user id", retry_after=60)
            self._user_id = str(data["id"])
            self._user_handle = data.get("username")
            log.info("X user resolved: @%s (id %s), %s auth", self._user_handle, self._user_id, self.auth_mode)
        return self._user_id

    # --- pages -----------------------------------------------------------------------------------------------------

    def pages(self, since_id: str | None) -> Iterator[Page]:
        self.last_gap = None
        if since_id is not None and not _ID.match(str(since_id)):
            log.warning("ignoring a since_id that is not a tweet id: %r", since_id)
            since_id = None
        user_id = self.user_id()
        route = f"/2/users/{user_id}/timelines/reverse_chronological"
        gap = self._window_gap(since_id)
        token: str | None = None
        count = 0
        seen = 0
        while True:
            params: dict[str, Any] = {
                "max_results": self.max_results,
                "expansions": ",".join(EXPANSIONS),
                "tweet.fields": ",".join(TWEET_FIELDS),
                "media.fields": ",".join(MEDIA_FIELDS),
                "user.fields": ",".join(USER_FIELDS),
            }
            if since_id:
                params["since_id"] = since_id
            if token:
                params["pagination_token"] = token
            what = f"GET {route}"
            response = self._call(
                what, lambda p=params: self._client.request("GET", route, params=p, user_auth=self._user_auth)
            )
            body = self._json(response, what)
            page = self.build_page(body)
            count += 1
            seen += len(body.get("data") or [])
            token = (body.get("meta") or {}).get("next_token")
            last = not token
            if token and count >= self.max_pages:
                last = True
                if since_id:
                    gap = gap or (
                        f"stopped after max_pages={self.max_pages} pages of {self.max_results} with more pages left "
                        f"before since_id {since_id}: the posts in between are not read (raise NIJIFEED_X_MAX_PAGES "
                        "or poll more often)"
                    )
                else:
                    log.info("first poll: read the newest %d pages only (max_pages)", count)
            if last and since_id and not gap and seen >= self.window_posts:
                gap = (
                    f"read {seen} posts since since_id {since_id}, as many as the API's window holds "
                    f"({self.window_posts} newest): older posts may be missing"
                )
            if gap:
                self._report_gap(page, gap)
                gap = None
            yield page
            if last:
                return

    def _window_gap(self, since_id: str | None) -> str | None:
        if not since_id:
            return None
        age_days = (self._clock() * 1000 - snowflake_ms(since_id)) / 86_400_000
        if age_days > WINDOW_DAYS:
            return (
                f"since_id {since_id} is {age_days:.1f} days old, older than the API's {WINDOW_DAYS:g}-day window: "
                "posts between it and the oldest post returned are missing"
            )
        return None

    def _report_gap(self, page: Page, reason: str) -> None:
        self.last_gap = reason
        page.gap = reason  # type: ignore[attr-defined]  # the pipeline reads getattr(page, "gap", False)
        log.warning("gap in the X home timeline: %s", reason, extra={"gap": reason, "source": self.name})

    # --- answers → posts -------------------------------------------------------------------------------------------

    def build_page(self, body: dict) -> Page:
        """One API answer (parsed JSON) as a ``Page``."""
        data = body.get("data") or []
        includes = body.get("includes") or {}
        media = {m.get("media_key"): m for m in includes.get("media") or [] if m.get("media_key")}
        users = {u.get("id"): u for u in includes.get("users") or [] if u.get("id")}
        referenced = {t.get("id"): t for t in includes.get("tweets") or [] if t.get("id")}
        errors = [self._describe_error(e) for e in body.get("errors") or []]
        if errors:
            log.warning("X API partial errors beside data (data used): %s", "; ".join(errors))
        for tweet in data:  # a referenced post that is itself on the page is found there too
            referenced.setdefault(tweet.get("id"), tweet)
        posts = [self._post(tweet, media, users, referenced) for tweet in data]
        meta = body.get("meta") or {}
        reads = len(data) + len(includes.get("tweets") or [])
        return Page(posts=posts, newest_id=meta.get("newest_id"), reads=reads, errors=errors)

    @staticmethod
    def _describe_error(error: dict) -> str:
        title = error.get("title") or "error"
        detail = error.get("detail") or error.get("message") or ""
        resource = error.get("resource_id") or error.get("value")
        text = f"{title}: {detail}" if detail else title
        if resource and str(resource) not in text:
            text += f" ({error.get('resource_type', 'resource')} {resource})"
        return text

    def _post(self, tweet: dict, media: dict, users: dict, referenced: dict) -> Post:
        tweet_id = str(tweet["id"])
        author = users.get(tweet.get("author_id")) or {}
        handle = author.get("username")
        refs = {r.get("type"): str(r.get("id")) for r in tweet.get("referenced_tweets") or []}
        own = self._media_refs(tweet, media)
        text = self._text(tweet)
        url = self._status_url(handle, tweet_id)
        via = via_id = None
        raw: dict[str, Any] = {"tweet": tweet}
        shown = own
        for kind, ref_type in (("retweet", "retweeted"), ("quote", "quoted")):
            if ref_type not in refs:
                continue
            ref_id = refs[ref_type]
            original = referenced.get(ref_id)
            if original is None:
                log.warning("post %s %ss %s, which the answer does not include; its media are unknown",
                            tweet_id, kind, ref_id)
                if kind == "retweet":
                    via, via_id = kind, ref_id
                continue
            orig_author = users.get(original.get("author_id")) or {}
            orig_url = self._status_url(orig_author.get("username"), ref_id)
            raw["original"] = {
                "id": ref_id,
                "kind": kind,
                "text": self._text(original),
                "url": orig_url,
                "created_at": original.get("created_at"),
                "author_id": original.get("author_id"),
                "author_name": orig_author.get("name"),
                "author_handle": orig_author.get("username"),
                "author_avatar": orig_author.get("profile_image_url"),
            }
            theirs = self._media_refs(original, media)
            if kind == "retweet":
                shown = theirs
                via, via_id = kind, ref_id
                url = orig_url
                prefix = f"RT @{orig_author['username']}: " if orig_author.get("username") else ""
                text = prefix + self._text(original) if prefix else text
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
            raw=raw,
        )

    @staticmethod
    def _status_url(handle: str | None, tweet_id: str) -> str:
        return f"https://x.com/{handle}/status/{tweet_id}" if handle else f"https://x.com/i/web/status/{tweet_id}"

    @staticmethod
    def _text(tweet: dict) -> str:
        """The text without the trailing media link, HTML entities unescaped (the API escapes & < >)."""
        text = tweet.get("text") or ""
        for url in (tweet.get("entities") or {}).get("urls") or []:
            link = url.get("url")
            if url.get("media_key") and link and text.rstrip().endswith(link):
                text = text.rstrip()[: -len(link)]
        return html.unescape(text).rstrip()

    @staticmethod
    def _media_refs(tweet: dict, media: dict) -> tuple[MediaRef, ...]:
        refs = []
        for key in (tweet.get("attachments") or {}).get("media_keys") or []:
            item = media.get(key)
            if item is None:
                log.warning("media %s of post %s is missing from includes.media", key, tweet.get("id"))
                continue
            kind = item.get("type") or "photo"
            if kind not in ("photo", "video", "animated_gif"):
                log.info("media %s has an unknown type %r; skipped", key, kind)
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

    # --- calls, retries, errors ------------------------------------------------------------------------------------

    def post(self, what: str, route: str, payload: dict) -> requests.Response:
        """POST to an API v2 ``route`` as the user, with this source's base URL, timeout, retries and error
        messages (the forwarders repost and bookmark through it)."""
        return self._call(what, lambda: self._client.request("POST", route, json=payload, user_auth=self._user_auth))

    def _call(self, what: str, fn: Callable[[], requests.Response]) -> requests.Response:
        attempt = 0
        while True:
            try:
                response = fn()
            except tweepy.TooManyRequests as exc:
                raise self._rate_limited(what, exc.response) from None
            except (tweepy.Unauthorized, tweepy.Forbidden) as exc:
                raise SourceError(self._auth_message(what, exc.response), fatal=True) from None
            except tweepy.TwitterServerError as exc:
                problem = f"{exc.response.status_code} {exc.response.reason}"
            except requests.Timeout:
                problem = f"no answer within {self.timeout:g} s"
            except requests.ConnectionError as exc:
                problem = f"connection failed ({type(exc).__name__})"
            except tweepy.HTTPException as exc:  # other 4xx: a request the API will not take; retrying won't help
                status = getattr(exc.response, "status_code", "?")
                detail = REDACTOR.redact(self._problem_text(exc.response))
                raise SourceError(f"X API refused {what}: {status} {detail}", retry_after=300) from None
            else:
                self._note_rate_limit(response)
                return response
            if attempt >= self.retries:
                delay = self._delay(attempt)
                raise SourceError(
                    f"X API {what} failed after {attempt + 1} tries: {problem}; try again in {delay:.0f} s",
                    retry_after=delay,
                )
            delay = self._delay(attempt)
            attempt += 1
            log.warning("X API %s: %s; retry %d/%d in %.2f s", what, problem, attempt, self.retries, delay)
            self._wait(delay)

    def _delay(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff * 2**attempt) * (0.5 + self._rng.random() / 2)

    def _wait(self, delay: float) -> None:
        if self._sleep is not None:
            self._sleep(delay)
        else:
            self._stop.wait(delay)
        if self._stop.is_set():
            raise SourceError("X API poll interrupted by shutdown")

    def _json(self, response: requests.Response, what: str) -> dict:
        try:
            body = response.json()
        except ValueError:
            raise SourceError(f"X API {what} answered with something that is not JSON", retry_after=60) from None
        if not isinstance(body, dict):
            raise SourceError(f"X API {what} answered with unexpected JSON", retry_after=60)
        return body

    def _note_rate_limit(self, response: requests.Response) -> None:
        headers = response.headers
        try:
            limit = int(headers["x-rate-limit-limit"])
            remaining = int(headers["x-rate-limit-remaining"])
            reset = int(headers["x-rate-limit-reset"])
        except (KeyError, ValueError):
            return
        self.rate_limit = {"limit": limit, "remaining": remaining, "reset": reset}
        level = logging.WARNING if remaining < max(3, limit // 20) else logging.DEBUG
        log.log(level, "X API rate limit: %d of %d left, window resets in %.0f s", remaining, limit,
                max(0.0, reset - self._clock()))

    def _rate_limited(self, what: str, response: requests.Response) -> SourceError:
        reset = response.headers.get("x-rate-limit-reset")
        try:
            retry_after = max(1.0, float(reset) - self._clock())
        except (TypeError, ValueError):
            retry_after = 900.0  # the API's 15-minute window
        return SourceError(
            f"X API rate limit reached ({what}); the window resets in {retry_after:.0f} s", retry_after=retry_after
        )

    @staticmethod
    def _problem(response: requests.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _problem_text(self, response: requests.Response) -> str:
        body = self._problem(response)
        parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
        parts += [str(e.get("message") or e.get("detail")) for e in body.get("errors") or [] if isinstance(e, dict)]
        return " - ".join(parts) or (response.text or "")[:200]

    def _auth_message(self, what: str, response: requests.Response) -> str:
        status = response.status_code
        body = self._problem(response)
        said = " - ".join(str(body[k]) for k in ("title", "detail") if body.get(k)) or response.reason or ""
        reason = body.get("reason") or ""
        problem_type = str(body.get("type") or "")
        if reason:
            said += f" [reason: {reason}]"
        if body.get("required_enrollment"):
            said += f" [required enrollment: {body['required_enrollment']}]"
        mode = {"oauth1": "OAuth 1.0a user context", "oauth2-user": "OAuth 2.0 bearer token"}[self.auth_mode]
        if status == 401:
            checks = [
                "the keys and tokens are correct and current (regenerating them in the developer portal "
                "invalidates the old ones; an OAuth 2.0 user token expires after 2 hours unless refreshed)",
                "NIJIFEED_X_API_BASE_URL points at the X API (or your proxy)",
            ]
            if self.auth_mode == "oauth1":
                checks.append("this machine's clock is right (OAuth 1.0a signatures carry a timestamp)")
        elif reason == "client-not-enrolled":
            checks = [
                "the app is attached to a Project in the developer portal (client-not-enrolled)",
                "your access tier/plan includes the home timeline (GET /2/users/:id/timelines/reverse_chronological "
                "is not part of every plan)",
            ]
        elif "unsupported-authentication" in problem_type or "Application-Only" in said:
            checks = [
                "the token is a user-context token: OAuth 1.0a consumer keys + access token/secret, or an OAuth "
                "2.0 *user* access token - not the app-only bearer token from the portal's Keys and tokens page",
            ]
        else:
            checks = [
                "your access tier/plan includes the home timeline",
                "the app is in a Project (client-not-enrolled)",
                "the token is user-context (not an app-only bearer token) with read permission",
                "the keys were not regenerated since the tokens were made",
            ]
        message = (
            f"X API refused {what} with {status} ({mode}): {said}. Nothing will work until this is fixed; check: "
            + "; ".join(checks)
            + "."
        )
        return REDACTOR.redact(message)


__all__ = ["DEFAULT_API_BASE_URL", "XSource", "snowflake_ms"]
