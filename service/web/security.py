"""Who may use the web face, and the headers every answer carries.

* **Binding.** Loopback by default. Any other address needs ``web_token`` (``check_exposure`` refuses to start
  without one), because the page shows the user's timeline and the store's figures.
* **Token** (``TokenGate``, whenever ``web_token`` is set, on loopback too): ``Authorization: Bearer TOKEN``, or
  ``?token=TOKEN``. On the page (``/``) the query token is exchanged for an HttpOnly, SameSite=Strict cookie (a
  hash of the token, not the token) and a redirect to the same URL without it, so it leaves the address bar and
  the history; feed readers keep ``?token=`` in the feed URL, and the feeds' image links carry it. ``/healthz``,
  ``/readyz`` and ``/static/`` are open: liveness probes have no credentials, and neither tells anything private.
* **Host** (``HostCheck``): a DNS-rebinding page (a name of the attacker's that resolves to 127.0.0.1 after the
  page loaded) would otherwise be same-origin with this site and read it. Only requests whose ``Host`` names this
  server are answered: the bound address, the address the connection came to, and the loopback names
  (``localhost``, ``127.0.0.1``, ``[::1]``), each at the bound port, and the names in ``web_allowed_hosts``
  (``NAME``: any port; ``NAME:PORT``: that port), e.g. a reverse proxy's public name. Others get a 421 (no Host
  at all: 400), with a one-line reason. Applies to every path, ``/healthz`` too.
* **Headers** (``SecurityHeaders``): a CSP with no inline script or style and images only from here and the
  media hosts (avatars are loaded from X), ``Referrer-Policy: no-referrer`` (image hosts never learn the page's
  address), ``nosniff``, and no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import ConfigError, Settings
from service.media.download import default_allowed_hosts

COOKIE = "nijifeed_token"
OPEN_PREFIXES = ("/healthz", "/readyz", "/static/")


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host(value: str, default_port: int | None = None) -> tuple[str, int | None] | None:
    """``Host``-style ``NAME[:PORT]`` (``[IPv6][:PORT]`` too) as (lower-case name without a trailing dot, port or
    ``default_port``); None when it is not one."""
    value = value.strip()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or not name or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text_or_empty = value.partition(":")
        port_text = port_text_or_empty if colon else None
        if not name or ":" in port_text_or_empty:
            return None
    if any(not (c.isascii() and (c.isalnum() or c in "-._:%")) for c in name):
        return None
    if port_text is None:
        return name.lower().rstrip("."), default_port
    if not (port_text.isascii() and port_text.isdigit() and 0 < len(port_text) <= 5 and int(port_text) <= 65535):
        return None
    return name.lower().rstrip("."), int(port_text)


class HostCheck:
    """ASGI middleware: answer only requests whose ``Host`` header names this server (see the module docstring)."""

    def __init__(self, app: ASGIApp, web_host: str, web_port: int, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.web_host = web_host.strip().strip("[]").lower().rstrip(".")
        self.web_port = web_port
        self.allowed: set[tuple[str, int | None]] = set()
        for entry in allowed:
            parsed = split_host(entry)
            if parsed is None:
                raise ConfigError(f"NIJIFEED_WEB_ALLOWED_HOSTS: {entry!r} is not NAME or NAME:PORT")
            self.allowed.add(parsed)

    def accepts(self, host: str, scope: Scope) -> bool:
        default_port = 443 if scope.get("scheme") in ("https", "wss") else 80
        parsed = split_host(host, default_port)
        if parsed is None:
            return False
        name, port = parsed
        if (name, None) in self.allowed or (name, port) in self.allowed:
            return True
        server = scope.get("server")  # the local address the connection came to (uvicorn), or the test client's
        bound_port = int(server[1]) if server and server[1] is not None else self.web_port
        here = {self.web_host, "localhost"} | ({str(server[0]).strip("[]").lower()} if server else set())
        return port == bound_port and (name in here or is_loopback(name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        hosts = [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"host"]
        if len(hosts) != 1:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _send(send, 400, b"bad request: exactly one Host header is needed\n", [])
            return
        if not self.accepts(hosts[0], scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            shown = "".join(c for c in hosts[0][:100] if c.isascii() and c.isprintable())
            reason = (f"misdirected request: this nijifeed does not answer to Host {shown!r} (a name it serves "
                      "must be the bound address, a loopback name at its port, or in NIJIFEED_WEB_ALLOWED_HOSTS)\n")
            await _send(send, 421, reason.encode(), [])
            return
        await self.app(scope, receive, send)


def check_exposure(settings: Settings) -> None:
    """Refuse a non-loopback bind without an access token (raises ``ConfigError`` saying what to set)."""
    token = settings.web_token.get_secret_value().strip() if settings.web_token else ""
    if not is_loopback(settings.web_host) and not token:
        raise ConfigError(
            f"NIJIFEED_WEB_HOST={settings.web_host} is not a loopback address, so the web face would be reachable "
            "from other machines: set NIJIFEED_WEB_TOKEN to a long random string (requests then need "
            "'Authorization: Bearer TOKEN' or ?token=TOKEN), or bind 127.0.0.1 and put a reverse proxy in front"
        )


def content_security_policy(settings: Settings) -> str:
    origins = {f"https://{host}" for host in default_allowed_hosts(settings.x_api_base_url, settings.media_hosts)}
    api = urlsplit(settings.x_api_base_url)
    origins.add(f"{api.scheme}://{api.netloc}")  # a sandbox or proxy serves media (and avatars) from its origin
    return "; ".join((
        "default-src 'self'",
        f"img-src 'self' {' '.join(sorted(origins))}",
        "style-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))


class SecurityHeaders:
    """ASGI middleware adding the safe headers to every HTTP answer (streamed files included)."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"referrer-policy", b"no-referrer"),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def cookie_value(token: str) -> str:
    """What the cookie holds: a hash of the token, so a leaked cookie does not reveal it."""
    return hashlib.sha256(f"nijifeed-web-cookie:{token}".encode()).hexdigest()


class TokenGate:
    """ASGI middleware: every request but ``OPEN_PREFIXES`` carries the token (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: str, open_prefixes: Iterable[str] = OPEN_PREFIXES) -> None:
        self.app = app
        self.token = token
        self.cookie = cookie_value(token)
        self.open_prefixes = tuple(open_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.open_prefixes):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = dict(query).get("token")
        if given is not None and _same(given, self.token):
            if scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
                await self._to_cookie(scope, query, send)
                return
            await self.app(scope, receive, send)
            return
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        cookie = SimpleCookie(headers.get("cookie", "")).get(COOKIE)
        if (bearer is not None and _same(bearer, self.token)) or (cookie is not None and _same(cookie.value,
                                                                                                  self.cookie)):
            await self.app(scope, receive, send)
            return
        await _send(send, 401, b"unauthorized: this nijifeed needs its access token (Authorization: Bearer TOKEN, "
                    b"or ?token=TOKEN)\n", [(b"www-authenticate", b'Bearer realm="nijifeed"')])

    async def _to_cookie(self, scope: Scope, query: list[tuple[str, str]], send: Send) -> None:
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        location = (scope.get("root_path", "") + scope["path"]) + (f"?{rest}" if rest else "")
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{COOKIE}={self.cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000{secure}"
        await _send(send, 303, b"", [(b"location", location.encode()), (b"set-cookie", cookie.encode())])


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    base = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": base + headers})
    await send({"type": "http.response.body", "body": body})
