"""The X API v2 transport: tweepy's ``Client`` with the user's credentials, one base URL, timeouts, retries, and the
one place where tweepy's and requests' errors become ``SourceError``.

* **Auth**: OAuth 1.0a user context (consumer key/secret + access token/secret; preferred when all four are set)
  or an OAuth 2.0 *user* access token (``bearer_token``, sent with ``user_auth=False``). An app-only bearer
  token cannot read a home timeline; the API answers 403 and the error says so.
* **One place for the host and the timeout**: ``client.session`` is an ``_ApiSession`` (a ``requests.Session``)
  that rewrites the ``https://api.twitter.com`` prefix tweepy hard-codes to ``api_base_url`` and gives every
  call a timeout (tweepy sets none). The OAuth 1.0a signature is computed for the URL actually requested.
* **Every answer is bounded before anyone reads it** (the session, again): ``timeout`` is the socket's, per
  read, so a server trickling bytes could hold a call for ever; each call also has a whole-answer ``deadline``
  (default: ``timeout``) enforced by a watchdog that shuts the connection's socket when the time is up, whether
  the server is trickling headers or body (then ``_Transient``, retried like a timeout). The body is streamed
  and decompressed in chunks up to ``max_answer_bytes`` (5 MB; a page of 100 posts with every expansion is
  well under 1 MB), so a small gzip answer cannot inflate into gigabytes: over the cap the call ends with a
  ``SourceError`` (retry in 5 minutes). Redirects are not followed (the API does not redirect). An error
  answer whose body tweepy's own error parser would choke on (not an object, ``errors`` not a list, a
  ``detail`` that is not text, JSON nested too deep) is emptied first, and an ``x-rate-limit-reset`` that is
  not a number is dropped, so the status still maps as below.
* **Calls**: ``user_id()`` (``GET /2/users/me``, once, cached), ``home_timeline(...)`` (one page of
  ``GET /2/users/:id/timelines/reverse_chronological``, the JSON body), and the writes the forwarders make,
  ``repost(tweet_id)`` and ``bookmark(tweet_id)`` (``POST /2/users/:id/retweets|bookmarks``), which answer a
  ``WriteResult``: ``DONE``, or ``ALREADY_DONE`` when X refuses a repeat (403 whose problem says the post is
  already reposted or bookmarked, or v1.1's code 327). X may also answer a repeat with a plain 200; that is
  ``DONE``, since nothing in the answer tells the two apart.
* **Errors** (``_mapped_errors``, the one mapping): 429 → ``SourceError(retry_after=seconds until
  x-rate-limit-reset)`` at once, never sleeping; 5xx, timeouts and connection errors → up to ``retries``
  retries with exponential backoff and jitter, slept on ``stop`` (a ``threading.Event``: setting it ends the wait
  and the call) or an injected ``sleep``, then ``SourceError(retry_after=...)``; 401/403 →
  ``SourceError(fatal=True)`` with what the API said and what to check; any other 4xx → ``SourceError`` (retry
  in 5 minutes); a broken answer (a body cut short, a bad ``Content-Encoding``) → retried like a 5xx; an answer
  that is not a JSON object, or whose shape is wrong (``users/me`` without a user id, a timeline page that
  ``x_parse`` refuses) → ``SourceError`` saying what was wrong (retry in a minute). No other exception leaves a
  call.
* **Secrets** never reach logs, exceptions or reprs: they live only in the tweepy client, and a filter on the
  loggers of tweepy, requests-oauthlib and oauthlib (whose DEBUG output includes headers) masks them.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import requests
import requests.adapters
import tweepy
import urllib3
import urllib3.connection

from service.sources import SourceError

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://api.twitter.com"
#: The most bytes one API answer may take once decompressed (see the module docstring).
MAX_ANSWER_BYTES = 5_000_000
_CHUNK = 64 * 1024
_ID = re.compile(r"^[0-9]{1,19}$")
_RESET = re.compile(r"^[0-9]{1,12}$")
#: The longest wait a rate-limit answer may ask for (X's longest window is a day); beyond it the reset is nonsense.
_MAX_RETRY_AFTER = 86_400.0

AuthMode = Literal["oauth1", "oauth2-user"]


class WriteResult(enum.Enum):
    """What a write (a repost, a bookmark) did: the state is now as asked either way."""

    DONE = "done"
    ALREADY_DONE = "already done"


def secret_text(value: object) -> str | None:
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
        "service.sources.x_timeline",
        "service.feed.forward.x",
    )

    def __init__(self) -> None:
        super().__init__("nijifeed-redactor")
        # Weak keys: a client's secrets stop being masked (and kept) once the client is gone.
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
        return sorted(found, key=len, reverse=True)  # longest first: a secret containing another is masked whole

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
        except Exception:  # noqa: BLE001 - a broken format string is not ours to fix; still mask the raw parts
            message = f"{record.msg} {record.args}"
        cleaned = message
        for secret in secrets:
            cleaned = cleaned.replace(secret, "***")
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


REDACTOR = _Redactor()


# --- the one place where the API host and the timeout are set ----------------------------------------------------


class _Watchdog:
    """Ends one API call at its deadline whatever the server does: when the time is up, the socket of the answer
    being read is shut down, so a read blocked on a server that trickles bytes returns at once. The connection
    classes below hand it the socket (``_WATCH`` names the watchdog of the call running on this thread)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.fired = False
        self._sock: socket.socket | None = None
        self._done = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        _WATCH.dog = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._done = True
            self._sock = None
        self._timer.cancel()
        _WATCH.dog = None

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            _shut(self._sock)


def _shut(sock: object) -> None:
    if isinstance(sock, socket.socket):
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, under TLS too: the read returns
        except OSError:
            pass


_WATCH = threading.local()


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self) -> urllib3.connection.HTTPResponse:  # type: ignore[override]  # as urllib3's own
        dog = getattr(_WATCH, "dog", None)
        if dog is not None:
            dog.watch(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self) -> urllib3.connection.HTTPResponse:  # type: ignore[override]  # as urllib3's own
        dog = getattr(_WATCH, "dog", None)
        if dog is not None:
            dog.watch(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections show their socket to the call's watchdog (through an HTTP(S) proxy
    too; through a SOCKS proxy only the deadline between chunks of the body applies)."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


class _ApiSession(requests.Session):
    """tweepy's session: every ``https://api.twitter.com`` URL goes to ``base_url``, every call has a timeout, a
    whole-answer deadline and a size cap, and its body is read here (see the module docstring)."""

    def __init__(self, base_url: str, timeout: float, *, deadline: float | None = None,
                 max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.deadline = deadline if deadline is not None else timeout
        self.max_answer_bytes = max_answer_bytes
        for prefix in ("https://", "http://"):
            self.mount(prefix, _WatchedAdapter())

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if isinstance(url, str) and url.startswith(DEFAULT_API_BASE_URL):
            url = self.base_url + url[len(DEFAULT_API_BASE_URL) :]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        kwargs["stream"] = True  # the body is read below, within the deadline and the cap
        kwargs["allow_redirects"] = False  # requests would read a redirect's body whole, unbounded
        with _Watchdog(self.deadline) as dog:
            try:
                response = super().request(method, url, *args, **kwargs)
                try:
                    response._content = self._read(response, dog)  # what .json() and .text read from now on
                    response._content_consumed = True  # read to the end: close() keeps the connection for reuse
                finally:
                    response.close()  # cut short: the connection is dropped with the rest unread
            except (requests.RequestException, OSError, urllib3.exceptions.HTTPError):
                if dog.expired():
                    raise _Transient(f"no complete answer within {self.deadline:g} s") from None
                raise
            if dog.fired:  # the socket was shut while headers were read: what came is cut short, whatever it says
                raise _Transient(f"no complete answer within {self.deadline:g} s")
        _tweepy_safe(response)
        return response

    def _read(self, response: requests.Response, dog: _Watchdog) -> bytes:
        cap = self.max_answer_bytes
        declared = (response.headers.get("content-length") or "").strip()
        if declared.isdigit() and len(declared) < 20 and int(declared) > cap:
            raise SourceError(f"X API answered {declared} bytes, more than the {cap}-byte cap: refused unread",
                              retry_after=300)
        body = bytearray()
        for chunk in response.iter_content(_CHUNK):  # decompressed a chunk at a time: never more than the cap
            body += chunk
            if len(body) > cap:
                raise SourceError(f"X API answer over the {cap}-byte cap (decompressed): refused", retry_after=300)
            if dog.expired():
                raise _Transient(f"no complete answer within {self.deadline:g} s")
        return bytes(body)


def _tweepy_safe(response: requests.Response) -> None:
    """Make an error answer safe for tweepy's own error parsing (``tweepy.HTTPException`` reads ``errors``,
    ``detail`` and ``x-rate-limit-reset`` trusting their shapes): a body it would choke on is emptied, a reset
    that is not a number dropped. The status, which is what the error mapping reads, stays."""
    if 200 <= response.status_code < 300:
        return
    reset = response.headers.get("x-rate-limit-reset")
    if reset is not None and not _RESET.match(reset.strip()):
        del response.headers["x-rate-limit-reset"]
    if not response.content:
        return
    try:
        body = response.json()
    except ValueError:
        return  # tweepy catches requests' JSONDecodeError itself
    except RecursionError:
        body = None
    if not _readable_problem(body):
        log.warning("X API error answer (%s) with a malformed body; its body is ignored", response.status_code)
        response._content = b""


def _readable_problem(body: object) -> bool:
    if not isinstance(body, dict):
        return False
    errors = body.get("errors", [])
    if not isinstance(errors, list) or "detail" in body and not isinstance(body["detail"], str):
        return False
    for error in errors:
        if isinstance(error, str):
            continue
        if not isinstance(error, dict) or "message" in error and not isinstance(error["message"], str):
            return False
    return True


class _Transient(Exception):
    """A failure another try may cure (a 5xx, a timeout, a lost connection); the message says which."""


# --- the client ------------------------------------------------------------------------------------------------


class XClient:
    """The user's X API v2 session (see the module docstring)."""

    def __init__(
        self,
        *,
        consumer_key: object = None,
        consumer_secret: object = None,
        access_token: object = None,
        access_token_secret: object = None,
        bearer_token: object = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        timeout: float = 15.0,
        retries: int = 3,
        backoff: float = 1.0,
        backoff_max: float = 60.0,
        deadline: float | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        """Credentials may be ``str`` or pydantic ``SecretStr``. ``timeout`` (seconds) applies to every read of
        every call, ``deadline`` (default ``timeout``) to each whole answer; ``max_answer_bytes``: the cap on one
        decompressed answer;
        ``retries``/``backoff``/``backoff_max``: retries of 5xx/timeouts/connection errors, waiting
        ``min(backoff_max, backoff * 2**n)`` scaled by a random factor in [0.5, 1); ``stop``: setting it ends a
        backoff wait at once (the call then fails with a non-fatal ``SourceError``); ``sleep``: replaces the wait
        (tests). Raises ``SourceError(fatal=True)`` when the credentials are missing or incomplete."""
        oauth1 = {
            "consumer_key": secret_text(consumer_key),
            "consumer_secret": secret_text(consumer_secret),
            "access_token": secret_text(access_token),
            "access_token_secret": secret_text(access_token_secret),
        }
        bearer = secret_text(bearer_token)
        given = [k for k, v in oauth1.items() if v]
        REDACTOR.register(self, tuple(v for v in (*oauth1.values(), bearer) if v))
        self.auth_mode: AuthMode
        if len(given) == 4:
            self.auth_mode = "oauth1"
        elif bearer:
            self.auth_mode = "oauth2-user"
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
        self._user_auth = self.auth_mode == "oauth1"
        client = tweepy.Client(
            bearer_token=None if self._user_auth else bearer,
            return_type=requests.Response,
            wait_on_rate_limit=False,  # a rate limit ends the call with retry_after; the daemon decides the wait
            **(oauth1 if self._user_auth else {}),
        )
        client.session = _ApiSession(api_base_url, timeout, deadline=deadline, max_answer_bytes=max_answer_bytes)
        self._client = client
        self.api_base_url = api_base_url.rstrip("/")
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._stop = stop or threading.Event()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._user_id: str | None = None
        self.user_handle: str | None = None
        self.rate_limit: dict[str, int] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> XClient:
        """The client ``settings`` describe: credentials and ``x_api_base_url``, ``http_timeout``, ``x_retries``
        and ``x_backoff``."""
        return cls(
            consumer_key=settings.x_consumer_key,
            consumer_secret=settings.x_consumer_secret,
            access_token=settings.x_access_token,
            access_token_secret=settings.x_access_token_secret,
            bearer_token=settings.x_bearer_token,
            api_base_url=settings.x_api_base_url,
            timeout=settings.http_timeout,
            retries=settings.x_retries,
            backoff=settings.x_backoff,
            stop=stop,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"XClient(api_base_url={self.api_base_url!r}, auth={self.auth_mode!r}, user_id={self._user_id!r})"

    # --- calls -----------------------------------------------------------------------------------------------------

    def user_id(self) -> str:
        """The authenticated user's id, from ``GET /2/users/me`` once."""
        if self._user_id is None:
            what = "GET /2/users/me"
            body = self._json(self._call(what, lambda: self._client.get_me(user_auth=self._user_auth)), what)
            data = body.get("data")
            user_id = data.get("id") if isinstance(data, dict) else None
            if not (isinstance(user_id, str) and _ID.match(user_id)):
                raise SourceError("GET /2/users/me answered without a user id", retry_after=60)
            self._user_id = user_id
            handle = data.get("username") if isinstance(data, dict) else None
            self.user_handle = handle if isinstance(handle, str) and handle.isprintable() else None
            log.info("X user resolved: @%s (id %s), %s auth", self.user_handle, self._user_id, self.auth_mode)
        return self._user_id

    def home_timeline(
        self,
        *,
        max_results: int,
        fields: Mapping[str, str],
        since_id: str | None = None,
        pagination_token: str | None = None,
    ) -> dict[str, Any]:
        """One page of the user's home timeline, newest first: the answer's JSON body. ``fields``: the
        ``expansions`` and ``*.fields`` parameters (what the caller will read)."""
        route = f"/2/users/{self.user_id()}/timelines/reverse_chronological"
        params: dict[str, Any] = {"max_results": max_results, **fields}
        if since_id:
            params["since_id"] = since_id
        if pagination_token:
            params["pagination_token"] = pagination_token
        what = f"GET {route}"
        response = self._call(what, lambda: self._client.request("GET", route, params=params,
                                                                 user_auth=self._user_auth))
        return self._json(response, what)

    def repost(self, tweet_id: str) -> WriteResult:
        """Repost (retweet) a post as the user."""
        return self._user_write("retweets", "retweeted", tweet_id)

    def bookmark(self, tweet_id: str) -> WriteResult:
        """Bookmark a post for the user."""
        return self._user_write("bookmarks", "bookmarked", tweet_id)

    def _user_write(self, collection: str, flag: str, tweet_id: str) -> WriteResult:
        what = f"POST /2/users/:id/{collection}"
        route = f"/2/users/{self.user_id()}/{collection}"

        def send() -> requests.Response:
            try:
                return self._client.request("POST", route, json={"tweet_id": tweet_id}, user_auth=self._user_auth)
            except tweepy.HTTPException as exc:
                if _already_done(exc.response):
                    return exc.response  # an outcome, not an error: it stays out of the error mapping
                raise

        response = self._call(what, send)
        if _already_done(response):
            return WriteResult.ALREADY_DONE
        data = self._json(response, what).get("data")
        if isinstance(data, dict) and data.get(flag) is False:
            raise SourceError(f"X API {what} answered {flag}: false for post {tweet_id}", retry_after=300)
        return WriteResult.DONE

    # --- retries, errors -------------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], requests.Response]) -> requests.Response:
        attempt = 0
        while True:
            try:
                with self._mapped_errors(what):
                    response = fn()
            except _Transient as exc:
                problem = str(exc)
            else:
                self._note_rate_limit(response)
                return response
            delay = self._delay(attempt)
            if attempt >= self.retries:
                raise SourceError(
                    f"X API {what} failed after {attempt + 1} tries: {problem}; try again in {delay:.0f} s",
                    retry_after=delay,
                )
            attempt += 1
            log.warning("X API %s: %s; retry %d/%d in %.2f s", what, problem, attempt, self.retries, delay)
            self._wait(delay)

    @contextmanager
    def _mapped_errors(self, what: str) -> Iterator[None]:
        """The one place where tweepy's and requests' errors (and the HTTP statuses behind them) become ours:
        ``SourceError``, or ``_Transient`` for what ``_call`` retries."""
        try:
            yield
        except tweepy.TooManyRequests as exc:
            raise self._rate_limited(what, exc.response) from None
        except (tweepy.Unauthorized, tweepy.Forbidden) as exc:
            raise SourceError(self._auth_message(what, exc.response), fatal=True) from None
        except tweepy.TwitterServerError as exc:
            raise _Transient(f"{exc.response.status_code} {exc.response.reason}") from None
        except requests.Timeout:
            raise _Transient(f"no answer within {self.timeout:g} s") from None
        except requests.ConnectionError as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # requests' others too: cut short, bad encoding...
            raise _Transient(f"broken answer ({type(exc).__name__})") from None
        except tweepy.HTTPException as exc:  # other 4xx: a request the API will not take; retrying won't help
            status = getattr(exc.response, "status_code", "?")
            detail = REDACTOR.redact(_problem_text(exc.response))
            raise SourceError(f"X API refused {what}: {status} {detail}", retry_after=300) from None

    def _delay(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff * 2**attempt) * (0.5 + self._rng.random() / 2)

    def _wait(self, delay: float) -> None:
        if self._sleep is not None:
            self._sleep(delay)
        else:
            self._stop.wait(delay)
        if self._stop.is_set():
            raise SourceError("X API call interrupted by shutdown")

    @staticmethod
    def _json(response: requests.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
            raise SourceError(f"X API {what} answered with something that is not JSON", retry_after=60) from None
        if not isinstance(body, dict):
            raise SourceError(f"X API {what} answered with unexpected JSON (not an object)", retry_after=60)
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
            retry_after = max(1.0, float(reset or "") - self._clock())
        except ValueError:
            retry_after = 900.0  # the API's 15-minute window
        if not math.isfinite(retry_after) or retry_after > _MAX_RETRY_AFTER:
            retry_after = 900.0
        return SourceError(
            f"X API rate limit reached ({what}); the window resets in {retry_after:.0f} s", retry_after=retry_after
        )

    def _auth_message(self, what: str, response: requests.Response) -> str:
        status = response.status_code
        body = _problem(response)
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
        said = " ".join(REDACTOR.redact(said).split())[:400]  # one line; masked before it is cut, never half a secret
        message = (
            f"X API refused {what} with {status} ({mode}): {said}. Nothing will work until this is fixed; check: "
            + "; ".join(checks)
            + "."
        )
        return REDACTOR.redact(message)


# --- problem bodies ----------------------------------------------------------------------------------------------

#: How X words a refused repeat: v2 problem details, and v1.1-style ``errors`` that some v2 answers still carry.
_ALREADY = re.compile(r"\balready (?:re(?:tweet|post)ed|bookmarked)\b", re.IGNORECASE)
_ALREADY_CODES = frozenset({327})  # v1.1's "You have already retweeted this Tweet."


def _already_done(response: requests.Response) -> bool:
    """Whether an answer is X's refusal to repeat a write that is already in effect (the state we want)."""
    if response.status_code != 403:
        return False
    body = _problem(response)
    errors = _error_items(body)
    if any(e.get("code") in _ALREADY_CODES for e in errors):
        return True
    said = [body.get("title"), body.get("detail"), *(e.get("message") or e.get("detail") for e in errors)]
    return any(isinstance(s, str) and _ALREADY.search(s) for s in said)


def _problem(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def _error_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    errors = body.get("errors")
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _problem_text(response: requests.Response) -> str:
    body = _problem(response)
    parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
    parts += [str(e.get("message") or e.get("detail")) for e in _error_items(body)]
    text = REDACTOR.redact(" - ".join(parts) or (response.text or "")[:2000])  # masked before it is cut
    return " ".join(text.split())[:400]  # one line


__all__ = ["DEFAULT_API_BASE_URL", "MAX_ANSWER_BYTES", "REDACTOR", "AuthMode", "WriteResult", "XClient", "secret_text"]
