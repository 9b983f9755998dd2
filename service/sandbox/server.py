"""A local X API v2 sandbox: the home timeline, ``users/me``, pbs-style media, faults on demand. Stdlib + Pillow.

Python API::

    with Sandbox(reveal=10) as sandbox:         # 127.0.0.1, a free port; the oldest 10 posts visible
        sandbox.url                            # http://127.0.0.1:PORT  (use as the API base URL)
        sandbox.publish(3)                     # 3 more posts appear, created now
        sandbox.inject("429", reset_in=30)     # the next API request answers 429
        sandbox.requests                       # what clients asked (no secrets)

HTTP control endpoints (for a sandbox run with ``python -m service.sandbox``): ``POST /_sandbox/publish?count=k``,
``POST /_sandbox/faults`` (JSON ``{"kind": "503", "times": 2, ...opts}``), ``GET``/``DELETE /_sandbox/faults``,
``GET``/``DELETE /_sandbox/requests``, ``GET /_sandbox/state``, ``GET /_sandbox/attribution``. The OAuth 2.0 (PKCE,
refresh-token rotation, expiring access tokens) and OAuth 1.0a (PIN) endpoints that ``nijifeed login`` uses:
``oauth.py`` (state in ``sandbox.oauth``).

Faults (``kind``; what they hit by default; options):

* ``429`` (api): ``reset_in`` seconds (default 60) in ``x-rate-limit-reset``, ``x-rate-limit-remaining: 0``;
* ``500``/``502``/``503``/``504`` (api): the API's error JSON;
* ``slow`` (api; ``target="media"`` for images): sleep ``seconds`` (default 2) before answering normally;
* ``partial_error`` (timeline): the answer keeps its data but loses a referenced post from ``includes``, listed
  in an ``errors`` array (``Not Found Error``, ``resource_id``...), or ``resource_id`` to name one;
* ``broken_image`` (media): 200 with ``mode`` ``truncated`` (default; half the JPEG) or ``garbage`` bytes;
* ``401`` (api) and ``403`` (api; ``reason`` ``client-not-enrolled`` (default) or ``unsupported-authentication``);
* ``malformed`` (timeline): a 200 whose body is ``body`` (text, as is), ``json`` (any JSON value), or, from the
  Python API only, ``mutate(payload)`` applied to the real answer's JSON; ``content_type`` replaces its type.

Every fault takes ``times`` (default 1; ``None``: until cleared) and ``target`` (``api``, ``timeline``, ``me``,
``media`` or ``any``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import re
import socket
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .oauth import ACCESS_PREFIX, OAUTH_PATHS, OAuthState
from .timeline_data import (
    EXPANSIONS,
    MEDIA_FIELDS,
    PLACE_FIELDS,
    POLL_FIELDS,
    TWEET_FIELDS,
    USER_FIELDS,
    Media,
    Timeline,
    Tweet,
    bundled_timeline,
    samples_dir,
)

log = logging.getLogger(__name__)

RATE_WINDOW_S = 15 * 60
RATE_LIMITS = {"timeline": 180, "me": 75, "api": 300}
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
#: Box sizes of pbs.twimg.com's ``name=`` variants (``thumb`` is a 150x150 crop; ``orig`` the original).
VARIANT_BOXES = {"small": (680, 680), "medium": (1200, 1200), "large": (2048, 2048), "thumb": (150, 150),
                 "240x240": (240, 240), "360x360": (360, 360), "900x900": (900, 900), "4096x4096": (4096, 4096)}
AVATAR_SIZES = {"mini": 24, "normal": 48, "bigger": 73, "200x200": 200, "400x400": 400}
FORMATS = {"jpg": ("JPEG", "image/jpeg"), "jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"),
           "webp": ("WEBP", "image/webp")}
FAULT_TARGETS = {"429": "api", "500": "api", "502": "api", "503": "api", "504": "api", "401": "api", "403": "api",
                 "slow": "api", "partial_error": "timeline", "broken_image": "media", "malformed": "timeline"}
TIMELINE_PARAMS = ("end_time", "exclude", "expansions", "max_results", "media.fields", "pagination_token",
                   "place.fields", "poll.fields", "since_id", "start_time", "tweet.fields", "until_id", "user.fields")
ME_PARAMS = ("expansions", "tweet.fields", "user.fields")
_ID = re.compile(r"^[0-9]{1,19}$")
_TIMELINE_PATH = re.compile(r"^/2/users/([^/]+)/timelines/reverse_chronological$")
_APP_ONLY_PREFIX = "AAAAAAAAAAAAAAAAAAAAA"  # how X's app-only bearer tokens begin

PROBLEMS = {
    401: {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
    429: {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429},
    500: {"title": "Internal Server Error", "detail": "Internal Server Error", "type": "about:blank", "status": 500},
    502: {"title": "Bad Gateway", "detail": "Bad Gateway", "type": "about:blank", "status": 502},
    503: {"title": "Service Unavailable", "detail": "Service Unavailable", "type": "about:blank", "status": 503},
    504: {"title": "Gateway Timeout", "detail": "Gateway Timeout", "type": "about:blank", "status": 504},
}
FORBIDDEN = {
    "client-not-enrolled": {
        "client_id": "27311981",
        "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a "
        "Twitter developer App that is attached to a Project. You can create a project via the developer portal.",
        "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
        "title": "Client Forbidden",
        "required_enrollment": "Appropriate Level of API Access",
        "reason": "client-not-enrolled",
        "type": "https://api.twitter.com/2/problems/client-forbidden",
    },
    "unsupported-authentication": {
        "title": "Unsupported Authentication",
        "detail": "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  Supported "
        "authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].",
        "type": "https://api.twitter.com/2/problems/unsupported-authentication",
        "status": 403,
    },
}


@dataclass
class Fault:
    kind: str
    times: int | None = 1  # None: until cleared
    target: str = "api"
    opts: dict = field(default_factory=dict)
    hits: int = 0

    def matches(self, endpoint: str) -> bool:
        if self.target == "any":
            return True
        if self.target == "api":
            return endpoint in ("timeline", "me", "api")
        return self.target == endpoint


@dataclass(frozen=True)
class RequestRecord:
    """One request as the sandbox saw it, minus secrets: ``auth`` is only the scheme (``OAuth``/``Bearer``)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    auth: str | None
    endpoint: str  # timeline, me, api, media, other
    status: int  # 0 while the answer is still being made (a slow fault)
    fault: str | None
    at: float


class _Reply:
    def __init__(self, status: int, body: bytes = b"", content_type: str = "application/json; charset=utf-8",
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = {"content-type": content_type, **(headers or {})}
        self.fault: str | None = None


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload, ensure_ascii=False).encode(), headers=headers)


def _invalid(param: str, value: str, message: str) -> _Reply:
    return _json(400, {
        "errors": [{"parameters": {param: [value]}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
    })


def _encode_token(oldest_id: str) -> str:
    number = int(oldest_id)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    check = zlib.crc32(oldest_id.encode()) % (36**4)
    tail = ""
    for _ in range(4):
        check, rest = divmod(check, 36)
        tail += digits[rest]
    return "7140d" + out + tail


def _decode_token(token: str) -> str | None:
    if not token.startswith("7140d") or len(token) < 10:
        return None
    try:
        oldest = str(int(token[5:-4], 36))
    except ValueError:
        return None
    return oldest if _encode_token(oldest) == token else None


def _pct(value: str) -> str:
    return quote(value, safe="~")  # RFC 3986 unreserved characters stay; everything else is %XX


def oauth1_signature(method: str, base_uri: str, pairs: list[tuple[str, str]], consumer_secret: str,
                     token_secret: str) -> str:
    """HMAC-SHA1 signature of a request (RFC 5849 section 3.4), as X checks it."""
    normalized = "&".join(f"{k}={v}" for k, v in sorted((_pct(k), _pct(v)) for k, v in pairs))
    base = "&".join((method.upper(), _pct(base_uri), _pct(normalized)))
    key = f"{_pct(consumer_secret)}&{_pct(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()


def _parse_time(value: str) -> int | None:
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sandbox: Sandbox

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            return  # a client that gave up (its timeout) or went away: normal for a sandbox
        log.exception("sandbox: error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tsa_b"
    sys_version = ""
    timeout = 30  # idle keep-alive connections end after this
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    wbufsize = 64 * 1024  # ... and leave in one send (flushed after each request)
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.sandbox._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sandbox._track(self.connection, False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        log.debug("sandbox: " + format, *args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header from the sandbox's ``clock``, so a test can offset the server's time (clock skew)."""
        return super().date_time_string(self.server.sandbox.clock() if timestamp is None else timestamp)

    def _handle(self) -> None:
        try:
            self.server.sandbox._serve(self)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = _handle


class Sandbox:
    """A local X API v2 home timeline with media, for tests and demos. See the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reveal: int | None = None,
        data: dict | None = None,
        cap: int = 800,
        photo_scale: float = 4.0,
        trailing_token: bool = True,
        public_url: str | None = None,
        accept_tokens: Collection[str] | None = None,
        oauth1_credentials: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        endless: bool = True,
        seed: int = 0,
        oauth2_token_ttl: float = 7200.0,
        oauth2_clients: dict[str, str | None] | None = None,
    ) -> None:
        """``reveal``: how many of the oldest timeline posts are visible at first (default all); ``cap``: the
        newest posts the endpoint returns (800 like the API); ``photo_scale``: the "orig" size of photos relative
        to the sample files, so ``small``/``medium`` variants really downscale; ``trailing_token``: a full page
        always carries ``next_token``, even when the next page is empty (a quirk of the API); ``accept_tokens``:
        when given, only these bearer tokens / OAuth ``oauth_token`` values are accepted (else any);
        ``oauth1_credentials`` (``consumer_key``, ``consumer_secret``, ``access_token``, ``access_token_secret``):
        when given, OAuth 1.0a requests must carry these keys and a valid HMAC-SHA1 signature of the URL the
        sandbox received (else 401, like the API); ``endless``: past the scripted timeline, ``publish`` goes on
        with generated posts (its photos mirrored and cropped, other authors and texts), the same for the same
        ``seed``; ``oauth2_token_ttl``: seconds an access token from ``POST /2/oauth2/token`` lasts;
        ``oauth2_clients``: client id -> secret of confidential clients (any other id is a public client). The
        OAuth endpoints and their state: ``self.oauth`` (``oauth.py``)."""
        self.host = host
        self.port = port
        self.cap = cap
        self.photo_scale = photo_scale
        self.trailing_token = trailing_token
        self.accept_tokens = frozenset(accept_tokens) if accept_tokens is not None else None
        self.oauth1_credentials = dict(oauth1_credentials) if oauth1_credentials else None
        self.clock = clock
        self._public_url = public_url.rstrip("/") if public_url else None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._faults: list[Fault] = []
        self._requests: list[RequestRecord] = []
        self._rate: dict[str, tuple[int, int]] = {}
        self._conns: set[socket.socket] = set()
        self._images: OrderedDict[tuple, bytes] = OrderedDict()
        self.samples = samples_dir()
        self.timeline = Timeline(data or bundled_timeline(), reveal=reveal, now_ms=self._now_ms(),
                                 samples=self.samples, photo_scale=photo_scale, endless=endless, seed=seed)
        consumers = ({self.oauth1_credentials["consumer_key"]: self.oauth1_credentials["consumer_secret"]}
                     if self.oauth1_credentials else {})
        self.oauth = OAuthState(token_ttl=oauth2_token_ttl, clients=oauth2_clients, consumers=consumers,
                                user_id=self.timeline.me.id, clock=clock, sign=oauth1_signature)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.sandbox = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"x-sandbox-{self.port}", daemon=True)
        self._thread.start()
        log.info("X API sandbox listening on %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._public_url:
            return self._public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- the Python control API ----------------------------------------------------------------------------------

    @property
    def me(self) -> dict:
        user = self.timeline.me
        return {"id": user.id, "name": user.name, "username": user.username}

    def publish(self, count: int = 1) -> list[str]:
        """Reveal ``count`` more posts (created now); returns their ids, oldest first."""
        with self._lock:
            return [t.id for t in self.timeline.publish(count, self._now_ms())]  # type: ignore[misc]

    @property
    def remaining(self) -> int:
        return self.timeline.remaining

    def inject(self, kind: str, times: int | None = 1, **opts: object) -> Fault:
        """Make the next ``times`` matching requests fail in the way ``kind`` names (see the module docstring)."""
        kind = str(kind)
        if kind not in FAULT_TARGETS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_TARGETS)}")
        target = str(opts.pop("target", FAULT_TARGETS[kind]))
        if target not in ("api", "timeline", "me", "media", "any"):
            raise ValueError(f"unknown fault target {target!r}")
        fault = Fault(kind, times, target, dict(opts))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests received (control endpoints under ``/_sandbox/`` excluded), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def posts(self) -> list[dict]:
        """The visible timeline as ground truth for tests, newest first: id, author, kind (post, retweet, quote,
        reply), ref_id, own media keys, and the media the post shows (its own plus a retweet's or quote's)."""
        with self._lock:
            out = []
            for t in self.timeline.visible(self._now_ms(), self.cap):
                kind = {"retweeted": "retweet", "quoted": "quote", "replied_to": "reply"}.get(t.ref_type or "", "post")
                shown = [] if kind == "retweet" else list(t.media)
                if kind in ("retweet", "quote") and t.ref is not None:
                    shown += t.ref.media
                out.append({
                    "id": t.id, "key": t.key, "author": t.author.username, "kind": kind,
                    "ref_id": t.ref.id if t.ref else None,
                    "ref_author": t.ref.author.username if t.ref else None,
                    "media_keys": [m.media_key for m in t.media],
                    "shown": [{"media_key": m.media_key, "type": m.type, "file": m.file, "url": self.url + m.path()}
                              for m in shown],
                    "created_ms": t.created_ms,
                })
            return out

    @property
    def attribution(self) -> list[dict]:
        return sorted(self.timeline.attribution.values(), key=lambda a: a["file"])

    # --- serving ---------------------------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        method = handler.command
        if path.startswith("/_sandbox/"):
            reply = self._control(method, path, query, body)
            self._send(handler, reply)
            return
        endpoint = "oauth" if path in OAUTH_PATHS else self._endpoint(path)
        auth = handler.headers.get("Authorization")
        scheme = auth.split(" ", 1)[0] if auth else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in SECRET_HEADERS}
        # Logged on arrival (status 0 while in progress), so a request a client gave up on is still listed.
        record = RequestRecord(method, path, query, headers, scheme, endpoint, 0, None, self.clock())
        with self._lock:
            self._requests.append(record)
        if endpoint == "oauth":
            oauth_reply = self.oauth.handle(method, path, query, body, {k.lower(): v for k, v in handler.headers.items()},
                                            f"http://{handler.headers.get('Host', '')}{path}")
            reply = _Reply(oauth_reply.status, oauth_reply.body, oauth_reply.content_type,
                           {"location": oauth_reply.location} if oauth_reply.location else None)
        elif endpoint == "media":
            reply = self._media(method, path, query)
        elif endpoint in ("timeline", "me", "api"):
            signed = (method, f"http://{handler.headers.get('Host', '')}{path}",
                      parse_qsl(parts.query, keep_blank_values=True))
            reply = self._api(method, path, query, endpoint, auth, signed)
        else:
            reply = _Reply(404, b"Not Found", "text/plain")
        with self._lock:
            for i in range(len(self._requests) - 1, -1, -1):
                if self._requests[i] is record:
                    self._requests[i] = replace(record, status=reply.status, fault=reply.fault)
                    break
        self._send(handler, reply)

    def _send(self, handler: _Handler, reply: _Reply) -> None:
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(reply.body)
        handler.wfile.flush()

    @staticmethod
    def _endpoint(path: str) -> str:
        if _TIMELINE_PATH.match(path):
            return "timeline"
        if path == "/2/users/me":
            return "me"
        if path.startswith("/2/"):
            return "api"
        if path.startswith(("/media/", "/ext_tw_video_thumb/", "/tweet_video_thumb/", "/profile_images/")):
            return "media"
        return "other"

    def _take_fault(self, endpoint: str, *, partial: bool = False) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (fault.kind == "partial_error") == partial and fault.matches(endpoint):
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(max(0.0, seconds))

    # --- the API -------------------------------------------------------------------------------------------------

    def _rate_headers(self, endpoint: str, count: bool) -> tuple[dict[str, str], bool]:
        now = int(self.clock())
        limit = RATE_LIMITS[endpoint]
        with self._lock:
            start, used = self._rate.get(endpoint, (now, 0))
            if now >= start + RATE_WINDOW_S:
                start, used = now, 0
            exceeded = count and used >= limit
            if count and not exceeded:
                used += 1
            self._rate[endpoint] = (start, used)
        headers = {"x-rate-limit-limit": str(limit), "x-rate-limit-remaining": str(max(0, limit - used)),
                   "x-rate-limit-reset": str(start + RATE_WINDOW_S)}
        return headers, exceeded

    def _check_auth(self, auth: str | None, signed: tuple) -> _Reply | None:
        if not auth:
            return _json(401, PROBLEMS[401])
        scheme, _, rest = auth.partition(" ")
        issued: tuple[str, str] | None = None
        if scheme == "Bearer":
            token = rest.strip()
            if not token:
                return _json(401, PROBLEMS[401])
            if token.startswith(_APP_ONLY_PREFIX):
                return _json(403, FORBIDDEN["unsupported-authentication"])
            if token.startswith(ACCESS_PREFIX):  # issued by POST /2/oauth2/token: good until it expires
                return _json(401, PROBLEMS[401]) if self.oauth.access_expired(token) else None
        elif scheme == "OAuth":
            params = {k: unquote(v) for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
            required = ("oauth_consumer_key", "oauth_nonce", "oauth_signature", "oauth_signature_method",
                        "oauth_timestamp", "oauth_token")
            if any(not params.get(name) for name in required):
                return _json(401, PROBLEMS[401])
            try:
                skew = abs(int(params["oauth_timestamp"]) - self.clock())
            except ValueError:
                skew = float("inf")
            if skew > 300:  # the API refuses OAuth 1.0a timestamps off by more than a few minutes
                return _json(401, PROBLEMS[401])
            token = params["oauth_token"]
            creds = self.oauth1_credentials
            issued = self.oauth.oauth1_secret(params["oauth_consumer_key"], token)
            if issued is not None:  # an access token from POST /oauth/access_token
                creds = {"consumer_key": params["oauth_consumer_key"], "access_token": token,
                         "consumer_secret": issued[0], "access_token_secret": issued[1]}
            if creds is not None:
                if (params["oauth_consumer_key"], token) != (creds["consumer_key"], creds["access_token"]):
                    return _json(401, PROBLEMS[401])
                method, base_uri, pairs = signed
                oauth_pairs = [(k, v) for k, v in params.items() if k.startswith("oauth_") and k != "oauth_signature"]
                expected = oauth1_signature(method, base_uri, [*pairs, *oauth_pairs], creds["consumer_secret"],
                                            creds["access_token_secret"])
                if not hmac.compare_digest(expected, params["oauth_signature"]):
                    return _json(401, PROBLEMS[401])
        else:
            return _json(401, PROBLEMS[401])
        if self.accept_tokens is not None and token not in self.accept_tokens and issued is None:
            return _json(401, PROBLEMS[401])
        return None

    def _api(self, method: str, path: str, query: dict[str, str], endpoint: str, auth: str | None,
             signed: tuple) -> _Reply:
        fault = self._take_fault(endpoint)
        if fault is not None and fault.kind == "slow":
            self._sleep(float(fault.opts.get("seconds", 2.0)))
        reply = self._api_inner(method, path, query, endpoint, auth, fault, signed)
        if fault is not None:
            reply.fault = fault.kind
        reply.headers.setdefault("x-response-time", "17")
        reply.headers.setdefault("cache-control", "no-cache, no-store, max-age=0")
        return reply

    def _api_inner(self, method: str, path: str, query: dict[str, str], endpoint: str, auth: str | None,
                   fault: Fault | None, signed: tuple) -> _Reply:
        bucket = endpoint if endpoint in RATE_LIMITS else "api"
        if fault is not None and fault.kind in ("401", "403"):
            rate, _ = self._rate_headers(bucket, count=False)
            if fault.kind == "401":
                return _json(401, PROBLEMS[401], rate)
            reason = str(fault.opts.get("reason", "client-not-enrolled"))
            return _json(403, FORBIDDEN.get(reason, FORBIDDEN["client-not-enrolled"]), rate)
        refused = self._check_auth(auth, signed)
        if refused is not None:
            return refused
        if fault is not None and fault.kind == "429":
            reset = int(self.clock() + float(fault.opts.get("reset_in", 60)))
            headers = {"x-rate-limit-limit": str(RATE_LIMITS[bucket]), "x-rate-limit-remaining": "0",
                       "x-rate-limit-reset": str(reset)}
            return _json(429, PROBLEMS[429], headers)
        if fault is not None and fault.kind.isdigit() and int(fault.kind) >= 500:
            rate, _ = self._rate_headers(bucket, count=True)
            return _json(int(fault.kind), PROBLEMS[int(fault.kind)], rate)
        rate, exceeded = self._rate_headers(bucket, count=True)
        if exceeded:
            return _json(429, PROBLEMS[429], rate)
        if method != "GET" or endpoint == "api":
            return _json(404, {"title": "Not Found Error", "detail": f"No such endpoint: {method} {path}",
                               "type": "https://api.twitter.com/2/problems/resource-not-found", "status": 404}, rate)
        if auth and auth.startswith("OAuth"):
            rate["x-access-level"] = "read"
        reply = self._me(query) if endpoint == "me" else self._home(path, query)
        if fault is not None and fault.kind == "malformed" and reply.status == 200:
            self._malform(reply, fault)
        reply.headers.update(rate)
        return reply

    @staticmethod
    def _malform(reply: _Reply, fault: Fault) -> None:
        """The answer a ``malformed`` fault asks for, in place of the real one (see the module docstring)."""
        opts = fault.opts
        if "body" in opts:
            body = opts["body"]
            reply.body = body if isinstance(body, bytes) else str(body).encode()
        elif "json" in opts:
            reply.body = json.dumps(opts["json"]).encode()
        elif callable(opts.get("mutate")):
            reply.body = json.dumps(opts["mutate"](json.loads(reply.body))).encode()
        if "content_type" in opts:
            reply.headers["content-type"] = str(opts["content_type"])

    @staticmethod
    def _check_params(query: dict[str, str], allowed: tuple[str, ...]) -> _Reply | None:
        for name, value in query.items():
            if name not in allowed:
                return _invalid(name, value, f"The query parameter [{name}] is not one of [{','.join(allowed)}]")
        for name, valid in (("tweet.fields", TWEET_FIELDS), ("media.fields", MEDIA_FIELDS),
                            ("user.fields", USER_FIELDS), ("expansions", EXPANSIONS),
                            ("place.fields", PLACE_FIELDS), ("poll.fields", POLL_FIELDS)):
            if name in query:
                for value in query[name].split(","):
                    if value not in valid:
                        return _invalid(name, value, f"The `{name}` query parameter value [{value}] is not one of "
                                        f"[{','.join(sorted(valid))}]")
        return None

    def _me(self, query: dict[str, str]) -> _Reply:
        bad = self._check_params(query, ME_PARAMS)
        if bad is not None:
            return bad
        fields = set(filter(None, query.get("user.fields", "").split(",")))
        return _json(200, {"data": self.timeline.me.render(fields, self.url)})

    def _home(self, path: str, query: dict[str, str]) -> _Reply:
        user_id = _TIMELINE_PATH.match(path).group(1)  # type: ignore[union-attr]
        if not _ID.match(user_id):
            return _invalid("id", user_id, f"The `id` query parameter value [{user_id}] does not match ^[0-9]{{1,19}}$")
        bad = self._check_params(query, TIMELINE_PARAMS)
        if bad is not None:
            return bad
        raw_max = query.get("max_results", "100")
        if not raw_max.isdigit() or not 5 <= int(raw_max) <= 100:
            return _invalid("max_results", raw_max,
                            f"The `max_results` query parameter value [{raw_max}] is not between 5 and 100")
        for name in ("since_id", "until_id"):
            if name in query and not _ID.match(query[name]):
                return _invalid(name, query[name],
                                f"The `{name}` query parameter value [{query[name]}] does not match ^[0-9]{{1,19}}$")
        times: dict[str, int | None] = {}
        for name in ("start_time", "end_time"):
            if name in query:
                times[name] = _parse_time(query[name])
                if times[name] is None:
                    return _invalid(name, query[name], f"Invalid '{name}':'{query[name]}'. '{name}' must be a "
                                    "valid RFC3339 date-time")
        exclude = set(filter(None, query.get("exclude", "").split(",")))
        if exclude - {"retweets", "replies"}:
            value = sorted(exclude - {"retweets", "replies"})[0]
            return _invalid("exclude", value, f"The `exclude` query parameter value [{value}] is not one of "
                            "[replies,retweets]")
        before = None
        if "pagination_token" in query:
            before = _decode_token(query["pagination_token"])
            if before is None:
                token = query["pagination_token"]
                return _invalid("pagination_token", token,
                                f"The `pagination_token` query parameter value [{token}] is not a valid token")
        if user_id != self.timeline.me.id:
            return _json(403, {"title": "Forbidden", "type": "about:blank", "status": 403,
                               "detail": "You can only request the reverse chronological timeline of the "
                               "authenticating user."})
        max_results = int(raw_max)
        with self._lock:
            posts = self.timeline.visible(self._now_ms(), self.cap)
            since = int(query["since_id"]) if "since_id" in query else None
            until = int(query["until_id"]) if "until_id" in query else None
            selected = []
            for t in posts:
                n = int(t.id)  # type: ignore[arg-type]
                if since is not None and n <= since or until is not None and n >= until:
                    continue
                if before is not None and n >= int(before):
                    continue
                start, end = times.get("start_time"), times.get("end_time")
                if start is not None and t.created_ms < start:
                    continue
                if end is not None and t.created_ms > end:
                    continue
                if "retweets" in exclude and t.ref_type == "retweeted":
                    continue
                if "replies" in exclude and t.ref_type == "replied_to":
                    continue
                selected.append(t)
            page = selected[:max_results]
            more = len(selected) > max_results or (self.trailing_token and len(page) == max_results)
            payload = self._render_page(page, query)
        if page:
            payload["meta"] = {"result_count": len(page), "newest_id": page[0].id, "oldest_id": page[-1].id}
            if more:
                payload["meta"]["next_token"] = _encode_token(page[-1].id)  # type: ignore[arg-type]
        else:
            payload["meta"] = {"result_count": 0}
        fault = self._take_fault("timeline", partial=True) if page else None
        if fault is not None:
            self._partial_error(payload, fault)
        reply = _json(200, payload)
        reply.fault = fault.kind if fault is not None else None
        return reply

    def _render_page(self, page: list[Tweet], query: dict[str, str]) -> dict:
        expansions = set(filter(None, query.get("expansions", "").split(",")))
        tweet_fields = set(filter(None, query.get("tweet.fields", "").split(",")))
        media_fields = set(filter(None, query.get("media.fields", "").split(",")))
        user_fields = set(filter(None, query.get("user.fields", "").split(",")))
        data = [t.render(tweet_fields, with_attachments="attachments.media_keys" in expansions,
                         with_author="author_id" in expansions, with_refs="referenced_tweets.id" in expansions)
                for t in page]
        media: dict[str, Media] = {}
        users: dict[str, object] = {}
        referenced: dict[str, Tweet] = {}
        for t in page:
            if "attachments.media_keys" in expansions and t.ref_type != "retweeted":
                media.update((m.media_key, m) for m in t.media)
            if "author_id" in expansions:
                users.setdefault(t.author.id, t.author)
            if t.ref is not None:
                referenced.setdefault(t.ref.id, t.ref)  # type: ignore[arg-type]
        for ref in referenced.values():
            if "referenced_tweets.id.attachments.media_keys" in expansions:
                media.update((m.media_key, m) for m in ref.media)
            if "referenced_tweets.id.author_id" in expansions:
                users.setdefault(ref.author.id, ref.author)
        if "entities.mentions.username" in expansions:
            by_name = {u.username.lower(): u for u in self.timeline.users.values()}
            for t in page:
                for mention in t.entities.get("mentions", []):
                    user = by_name.get(mention["username"].lower())
                    if user is not None:
                        users.setdefault(user.id, user)
        if "in_reply_to_user_id" in expansions:
            for t in page:
                if t.ref_type == "replied_to" and t.ref is not None:
                    users.setdefault(t.ref.author.id, t.ref.author)
        payload: dict = {}
        if data:
            payload["data"] = data
        includes: dict = {}
        if media:
            includes["media"] = [m.render(media_fields, self.url) for m in media.values()]
        if users:
            includes["users"] = [u.render(user_fields, self.url) for u in users.values()]  # type: ignore[attr-defined]
        if "referenced_tweets.id" in expansions and referenced:
            includes["tweets"] = [
                r.render(tweet_fields,
                         with_attachments="referenced_tweets.id.attachments.media_keys" in expansions,
                         with_author="referenced_tweets.id.author_id" in expansions, with_refs=False)
                for r in referenced.values()
            ]
        if includes:
            payload["includes"] = includes
        return payload

    @staticmethod
    def _partial_error(payload: dict, fault: Fault) -> None:
        """Drop one referenced post (and its media) from includes, and say so in ``errors`` like the API does."""
        includes = payload.get("includes", {})
        wanted = fault.opts.get("resource_id")
        tweets = includes.get("tweets", [])
        in_data = {t["id"] for t in payload.get("data", [])}
        victim = next((t for t in tweets if wanted in (None, t["id"]) and t["id"] not in in_data), None)
        victim = victim or next((t for t in tweets if wanted in (None, t["id"])), None)
        if victim is None:
            refs = [r for d in payload.get("data", []) for r in d.get("referenced_tweets", [])]
            resource_id = str(wanted or (refs[0]["id"] if refs else "1460323737035677698"))
        else:
            resource_id = victim["id"]
            includes["tweets"] = [t for t in tweets if t is not victim]
            if not includes["tweets"]:
                del includes["tweets"]
            gone = set(victim.get("attachments", {}).get("media_keys", []))
            for kept in [*payload.get("data", []), *includes.get("tweets", [])]:
                gone -= set(kept.get("attachments", {}).get("media_keys", []))
            if gone and "media" in includes:
                includes["media"] = [m for m in includes["media"] if m["media_key"] not in gone]
                if not includes["media"]:
                    del includes["media"]
        payload.setdefault("errors", []).append({
            "value": resource_id,
            "detail": f"Could not find tweet with referenced_tweets.id: [{resource_id}].",
            "title": "Not Found Error",
            "resource_type": "tweet",
            "parameter": "referenced_tweets.id",
            "resource_id": resource_id,
            "type": "https://api.twitter.com/2/problems/resource-not-found",
        })

    # --- media ---------------------------------------------------------------------------------------------------

    def _media(self, method: str, path: str, query: dict[str, str]) -> _Reply:
        fault = self._take_fault("media")
        if fault is not None and fault.kind == "slow":
            self._sleep(float(fault.opts.get("seconds", 2.0)))
        reply = self._media_inner(method, path, query)
        if fault is not None and fault.kind == "broken_image" and reply.status == 200:
            if fault.opts.get("mode", "truncated") == "garbage":
                reply.body = bytes((i * 131 + 7) % 256 for i in range(2048))
            else:
                reply.body = reply.body[: max(16, len(reply.body) // 2)]
        elif fault is not None and fault.kind.isdigit():
            reply = _Reply(int(fault.kind), f"{fault.kind} error".encode(), "text/plain")
        if fault is not None:
            reply.fault = fault.kind
        return reply

    def _media_inner(self, method: str, path: str, query: dict[str, str]) -> _Reply:
        if method not in ("GET", "HEAD"):
            return _Reply(405, b"", "text/plain")
        segments = path.strip("/").split("/")
        last = segments[-1]
        stem, dot, ext = last.partition(".")
        ext, _, legacy = ext.partition(":")
        if segments[0] == "profile_images":
            return self._avatar(segments, stem, ext)
        media = self.timeline.media_by_name.get(stem)
        if media is None or media.type == "photo" and segments[0] != "media":
            return _Reply(404, b"", "text/plain")
        fmt = (query.get("format") or ext or "jpg").lower()
        variant = query.get("name") or legacy or "medium"
        if fmt not in FORMATS:
            return _Reply(400, b"unsupported format", "text/plain")
        if variant != "orig" and variant not in VARIANT_BOXES:
            return _Reply(400, b"unsupported name", "text/plain")
        body = self._variant(media, variant, fmt)
        return _Reply(200, body, FORMATS[fmt][1], {
            "cache-control": "max-age=604800, must-revalidate", "access-control-allow-origin": "*",
            "last-modified": "Mon, 01 Jan 2024 00:00:00 GMT", "timing-allow-origin": "https://x.com"})

    def _variant(self, media: Media, variant: str, fmt: str) -> bytes:
        from PIL import Image, ImageOps

        key = (media.name, variant, fmt)
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        with Image.open(self.samples / media.file) as src:
            image = src.convert("RGB")
            if media.transform is not None:
                image = media.transform.apply(image)
            width, height = media.width, media.height
            if variant == "thumb":
                image = ImageOps.fit(image, VARIANT_BOXES["thumb"], Image.Resampling.LANCZOS)
            else:
                box_w, box_h = VARIANT_BOXES.get(variant, (width, height))
                scale = min(1.0, box_w / width, box_h / height)
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                if size != image.size:
                    image = image.resize(size, Image.Resampling.LANCZOS)
        body = self._encode(image, fmt)
        with self._lock:
            self._images[key] = body
            while len(self._images) > 256:
                self._images.popitem(last=False)
        return body

    def _avatar(self, segments: list[str], stem: str, ext: str) -> _Reply:
        from PIL import Image, ImageOps

        user = next((u for u in self.timeline.users.values() if len(segments) == 3 and u.id == segments[1]), None)
        name, _, size_name = stem.rpartition("_")
        if user is None or not name:
            return _Reply(404, b"", "text/plain")
        side = AVATAR_SIZES.get(size_name)
        with Image.open(self.samples / user.avatar) as src:
            image = src.convert("RGB")
            side = side or min(image.size)
            image = ImageOps.fit(image, (side, side), Image.Resampling.LANCZOS)
        fmt = ext.lower() if ext.lower() in FORMATS else "jpg"
        return _Reply(200, self._encode(image, fmt), FORMATS[fmt][1], {"cache-control": "max-age=604800"})

    @staticmethod
    def _encode(image: object, fmt: str) -> bytes:
        buffer = io.BytesIO()
        pil_format = FORMATS[fmt][0]
        options = {"quality": 85} if pil_format in ("JPEG", "WEBP") else {}
        image.save(buffer, pil_format, **options)  # type: ignore[attr-defined]
        return buffer.getvalue()

    # --- control endpoints -----------------------------------------------------------------------------------------

    def _control(self, method: str, path: str, query: dict[str, str], body: bytes) -> _Reply:
        name = path.removeprefix("/_sandbox/").strip("/")
        try:
            if name == "publish" and method == "POST":
                ids = self.publish(int(query.get("count", "1")))
                return _json(200, {"published": ids, "remaining": self.remaining})
            if name == "faults" and method == "POST":
                spec = json.loads(body or b"{}")
                kind = spec.pop("kind")
                times = spec.pop("times", 1)
                return _json(201, {"fault": asdict(self.inject(kind, times, **spec))})
            if name == "faults" and method == "GET":
                return _json(200, {"faults": [asdict(f) for f in self.faults]})
            if name == "faults" and method == "DELETE":
                self.clear_faults()
                return _json(200, {"faults": []})
            if name == "requests" and method == "GET":
                return _json(200, {"requests": [asdict(r) for r in self.requests]})
            if name == "requests" and method == "DELETE":
                self.clear_requests()
                return _json(200, {"requests": []})
            if name == "state" and method == "GET":
                visible = self.timeline.visible(self._now_ms(), self.cap)
                return _json(200, {"url": self.url, "me": self.me, "visible": len(visible),
                                   "remaining": self.remaining, "newest_id": visible[0].id if visible else None,
                                   "faults": [asdict(f) for f in self.faults]})
            if name == "attribution" and method == "GET":
                return _json(200, {"images": self.attribution})
        except (KeyError, ValueError, TypeError) as exc:
            return _json(400, {"title": "Invalid Request", "detail": f"bad control request: {exc}"})
        return _json(404, {"title": "Not Found Error", "detail": f"no control endpoint {method} {path}"})


__all__ = ["Fault", "RequestRecord", "Sandbox"]
