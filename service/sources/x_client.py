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
* **OAuth 2.0 tokens that last** (``from_settings`` with tokens from ``nijifeed login`` in ``DATA_DIR/x_tokens.json``,
  or ``NIJIFEED_X_REFRESH_TOKEN`` with ``NIJIFEED_X_CLIENT_ID`` as a seed): the one place where the access token
  is refreshed, ``_refresh_oauth2``, before any call once less than a quarter of its lifetime (at most 5 minutes)
  is left, and once after a 401 (then the call is sent again). Under the token file's lock it reads the file
  first (another process may have refreshed already), posts ``grant_type=refresh_token`` to
  ``/2/oauth2/token`` on the API base URL, and saves the answer (the rotated refresh token) atomically before the
  new access token is used (see ``x_tokens`` for what a crash can lose). A refused refresh token is fatal: run
  ``nijifeed login``. Precedence in ``from_settings``: the four OAuth 1.0a settings, then the token file (a seed
  that differs from the one the file came from replaces it), then the seed, then ``NIJIFEED_X_BEARER_TOKEN``.
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
import requests.auth
import tweepy
import urllib3
import urllib3.connection

from service.sources import SourceError
from service.sources.x_tokens import TokenFile, oauth2_record, seed_hash

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
        #: The headers of the last answer (errors too): its ``Date`` (clock skew) and ``x-access-level`` (doctor).
        self.last_headers: Mapping[str, str] = {}
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
        self.last_headers = response.headers
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
        oauth2_tokens: dict[str, Any] | None = None,
        token_file: TokenFile | None = None,
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
        (tests). ``oauth2_tokens``: a refreshable OAuth 2.0 record (see ``x_tokens``), kept in ``token_file``; it
        replaces ``bearer_token``. Raises ``SourceError(fatal=True)`` when the credentials are missing or
        incomplete."""
        oauth1 = {
            "consumer_key": secret_text(consumer_key),
            "consumer_secret": secret_text(consumer_secret),
            "access_token": secret_text(access_token),
            "access_token_secret": secret_text(access_token_secret),
        }
        self._oauth2 = dict(oauth2_tokens) if oauth2_tokens else None
        self._token_file = token_file
        self._unsaved: dict[str, Any] | None = None  # refreshed tokens a failed save left in memory, unused
        bearer = secret_text(bearer_token)
        if self._oauth2 is not None:
            bearer = str(self._oauth2.get("access_token") or "") or "none-yet"  # none yet: refreshed before use
        given = [k for k, v in oauth1.items() if v]
        self._register_secrets(oauth1, bearer)
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
        self._oauth1_secrets = oauth1
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
        """The client ``settings`` describe: credentials (see the module docstring for which win) and
        ``x_api_base_url``, ``http_timeout``, ``x_retries`` and ``x_backoff``."""
        creds: dict[str, Any] = {
            "consumer_key": settings.x_consumer_key,
            "consumer_secret": settings.x_consumer_secret,
            "access_token": settings.x_access_token,
            "access_token_secret": settings.x_access_token_secret,
            "bearer_token": settings.x_bearer_token,
        }
        token_file = TokenFile(settings.x_tokens_path)
        if not all(secret_text(creds[k]) for k in ("consumer_key", "consumer_secret", "access_token",
                                                     "access_token_secret")):
            creds.update(_stored_credentials(settings, token_file))
        return cls(
            **creds,
            token_file=token_file,
            api_base_url=settings.x_api_base_url,
            timeout=settings.http_timeout,
            retries=settings.x_retries,
            backoff=settings.x_backoff,
            stop=stop,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"XClient(api_base_url={self.api_base_url!r}, auth={self.auth_mode!r}, user_id={self._user_id!r})"

    def _register_secrets(self, oauth1: Mapping[str, str | None], bearer: str | None) -> None:
        extra: tuple[str, ...] = ()
        if self._oauth2 is not None:
            extra = tuple(str(self._oauth2.get(k) or "") for k in ("access_token", "refresh_token", "client_secret"))
        if self._unsaved is not None:
            extra += tuple(str(self._unsaved.get(k) or "") for k in ("access_token", "refresh_token"))
        REDACTOR.register(self, tuple(v for v in (*oauth1.values(), bearer, *extra) if v))

    @property
    def refreshable(self) -> bool:
        """Whether the OAuth 2.0 access token is refreshed here (tokens from ``login`` or a seed)."""
        return self._oauth2 is not None

    @property
    def oauth2_client_id(self) -> str | None:
        """The OAuth 2.0 client id the refreshable tokens belong to."""
        return str(self._oauth2.get("client_id") or "") or None if self._oauth2 else None

    @property
    def token_expires_at(self) -> float | None:
        """When the current OAuth 2.0 access token expires (Unix seconds), for refreshable tokens."""
        return float(self._oauth2["expires_at"]) if self._oauth2 and self._oauth2.get("expires_at") else None

    # --- OAuth 2.0 refresh: the one place ----------------------------------------------------------------------------

    def _refresh_due(self) -> bool:
        tokens = self._oauth2
        if tokens is None:
            return False
        if not tokens.get("access_token"):
            return True
        lifetime = float(tokens.get("lifetime") or 7200.0)
        return float(tokens.get("expires_at") or 0.0) - self._clock() <= min(300.0, lifetime / 4)

    def _adopt(self, record: dict[str, Any]) -> None:
        self._oauth2 = record
        self._client.bearer_token = str(record["access_token"])
        self._register_secrets(self._oauth1_secrets, None)

    def _save_tokens(self, record: dict[str, Any]) -> None:
        if self._token_file is None:
            return
        try:
            self._token_file.save(record)
        except OSError as exc:
            self._unsaved = record
            self._register_secrets(self._oauth1_secrets, None)
            raise SourceError(
                f"cannot save the refreshed X tokens to {self._token_file.path}: {exc.strerror or exc}; they are kept "
                "in memory, unused, and saved at the next try (X has already retired the old refresh token)",
                retry_after=60,
            ) from None
        self._unsaved = None

    def _refresh_oauth2(self, *, after_401: bool = False) -> None:
        """Refresh the OAuth 2.0 access token when due (or after a 401 with the token in use): see the module
        docstring. The new refresh token is on disk before the new access token is used."""
        assert self._oauth2 is not None
        file = self._token_file
        lock = file.locked() if file is not None else _no_lock()
        with lock:
            pending = self._unsaved
            if pending is not None:  # a save failed last time: those tokens are the only valid ones
                self._save_tokens(pending)
                self._adopt(pending)
                if not after_401:
                    return
            stored = file.load() if file is not None else None
            in_use = self._oauth2.get("access_token")
            if (stored and stored.get("kind") == "oauth2" and stored.get("refresh_token")
                    and stored.get("refresh_token") != self._oauth2.get("refresh_token")
                    and self._oauth2.get("seed_sha256") in (None, stored.get("seed_sha256"))):
                self._adopt({**stored, "client_secret": self._oauth2.get("client_secret") or stored.get(
                    "client_secret")})  # refreshed by another process (or thread) meanwhile
                if not self._refresh_due() and not (after_401 and self._oauth2.get("access_token") == in_use):
                    return
            elif not after_401 and not self._refresh_due():
                return
            self._refresh_now()

    def _refresh_now(self) -> None:
        assert self._oauth2 is not None
        tokens = self._oauth2
        client_id = str(tokens.get("client_id") or "")
        secret = secret_text(tokens.get("client_secret"))
        data = {"grant_type": "refresh_token", "refresh_token": str(tokens["refresh_token"]), "client_id": client_id}
        auth = requests.auth.HTTPBasicAuth(client_id, secret) if secret else None
        what = "POST /2/oauth2/token (refresh)"
        response = self._client.session.request("POST", DEFAULT_API_BASE_URL + "/2/oauth2/token", data=data,
                                                auth=auth)
        status = response.status_code
        if status == 429:
            raise self._rate_limited(what, response)
        if status >= 500:
            raise _Transient(f"{status} {response.reason}")
        if status != 200:
            body = _problem(response)
            said = REDACTOR.redact(" ".join(str(body.get(k) or "") for k in ("error", "error_description")).strip())
            raise SourceError(
                f"X refused to refresh the OAuth 2.0 token ({status} {said[:200] or response.reason}): the refresh "
                "token is spent or revoked (used by another install, revoked in the X settings, or a crash lost the "
                "rotated one); run `nijifeed login` again",
                fatal=True,
            )
        record = oauth2_record(self._json(response, what), client_id=client_id, client_secret=secret,
                               now=self._clock(), seed_sha256=tokens.get("seed_sha256"),
                               previous_scope=tokens.get("scope"))
        self._unsaved = record  # until saved: masked in logs, never used
        self._save_tokens(record)  # before anything uses the new access token
        self._adopt(record)
        log.info("X OAuth 2.0 access token refreshed; the next expires in %.0f s", record["lifetime"])

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
        renewed = False
        while True:
            try:
                with self._mapped_errors(what):
                    if self._oauth2 is not None and (self._unsaved is not None or self._refresh_due()):
                        self._refresh_oauth2()
                    try:
                        response = fn()
                    except tweepy.Unauthorized:
                        if self._oauth2 is None or renewed:
                            raise
                        renewed = True  # once per call: a second 401 is not the token's age
                        log.info("X API %s: 401 with the OAuth 2.0 access token; refreshing it", what)
                        self._refresh_oauth2(after_401=True)
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


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


def _stored_credentials(settings: Settings, token_file: TokenFile) -> dict[str, Any]:
    """Credentials from ``nijifeed login``'s token file or the ``NIJIFEED_X_REFRESH_TOKEN`` seed (see the module
    docstring for the precedence), as ``XClient`` keyword arguments; empty when there are none."""
    stored = token_file.load()
    seed = secret_text(settings.x_refresh_token)
    client_secret = secret_text(settings.x_client_secret)
    if stored is not None and stored["kind"] == "oauth1":
        return {key: stored.get(key) for key in ("consumer_key", "consumer_secret", "access_token",
                                                 "access_token_secret")}
    if seed and (stored is None or stored.get("seed_sha256") not in (None, seed_hash(seed))):
        client_id = settings.x_client_id or (stored or {}).get("client_id")
        if not client_id:
            raise SourceError("NIJIFEED_X_REFRESH_TOKEN needs NIJIFEED_X_CLIENT_ID (the app's OAuth 2.0 client id)",
                              fatal=True)
        record: dict[str, Any] = {"kind": "oauth2", "client_id": client_id, "access_token": None,
                                  "refresh_token": seed, "expires_at": 0.0, "seed_sha256": seed_hash(seed)}
        if client_secret:
            record["client_secret"] = client_secret
        return {"oauth2_tokens": record}
    if stored is not None:
        record = dict(stored)
        if client_secret:
            record["client_secret"] = client_secret
        if settings.x_client_id:
            record["client_id"] = settings.x_client_id
        return {"oauth2_tokens": record}
    return {}


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
