"""The sandbox's OAuth endpoints: OAuth 2.0 Authorization Code with PKCE (and refresh-token rotation), and OAuth
1.0a's PIN-based flow. Served by ``Sandbox`` (``server.py``); state in memory, one ``OAuthState`` per sandbox.

OAuth 2.0:

* ``GET /i/oauth2/authorize?response_type=code&client_id&redirect_uri&scope&state&code_challenge&
  code_challenge_method=S256``: consent is automatic; answers 302 to ``redirect_uri?state=...&code=...``.
* ``POST /2/oauth2/token`` (form): ``grant_type=authorization_code`` (``code``, ``redirect_uri``,
  ``code_verifier``: SHA-256 of it must match the challenge; a code works once) and ``grant_type=refresh_token``
  (``refresh_token``: each use answers a new refresh token and the old one stops working, as on X). A client
  registered with a secret (``oauth2_clients``) must authenticate with HTTP Basic; any other ``client_id`` is a
  public client. Errors are ``400 {"error": "invalid_request", "error_description": ...}`` as X answers them.
* Access tokens it issued expire ``token_ttl`` seconds after issue (``expires_in``); an expired one gets 401 from
  every API endpoint. ``expire_access_tokens()`` ends every issued one now.

OAuth 1.0a: ``POST /oauth/request_token`` (``oauth_callback=oob``; signed with the consumer's secret when the
consumer is known), ``GET /oauth/authorize?oauth_token=`` (an HTML page showing the PIN; ``pin_for(token)`` gives
it to tests), ``POST /oauth/access_token`` (``oauth_verifier`` = the PIN): a new access token and secret that the
API endpoints accept, signature checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

OAUTH_PATHS = frozenset({"/i/oauth2/authorize", "/2/oauth2/token", "/oauth/request_token", "/oauth/authorize",
                         "/oauth/access_token"})
ACCESS_PREFIX = "sbx2a-"  # access tokens this sandbox issued (others are judged as before: any is accepted)


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    location: str | None = None


def _json(status: int, payload: object) -> _Reply:
    return _Reply(status, json.dumps(payload).encode())


def _bad(detail: str, error: str = "invalid_request") -> _Reply:
    return _json(400, {"error": error, "error_description": detail})


@dataclass
class _Grant:
    client_id: str
    scope: str


class OAuthState:
    """Codes, tokens and request tokens of one sandbox (thread-safe)."""

    def __init__(self, *, token_ttl: float = 7200.0, clients: dict[str, str | None] | None = None,
                 consumers: dict[str, str] | None = None, user_id: str = "", clock: Callable[[], float] = time.time,
                 sign: Callable[[str, str, list[tuple[str, str]], str, str], str] | None = None) -> None:
        """``sign``: the HMAC-SHA1 signature of a request (``server.oauth1_signature``), for OAuth 1.0a."""
        self.token_ttl = token_ttl
        self.clients = dict(clients or {})
        self.consumers = dict(consumers or {})
        self.user_id = user_id
        self.clock = clock
        self.sign = sign or (lambda *args: "")
        self._lock = threading.Lock()
        self._codes: dict[str, tuple[_Grant, str, str]] = {}  # code -> grant, redirect_uri, challenge
        self._access: dict[str, float] = {}  # access token -> expiry (clock seconds)
        self._refresh: dict[str, _Grant] = {}  # the refresh tokens that still work
        self.used_refresh: set[str] = set()  # rotated away: refused from now on
        self._request_tokens: dict[str, tuple[str, str, str]] = {}  # token -> consumer key, secret, pin
        self.oauth1_tokens: dict[str, tuple[str, str]] = {}  # access token -> consumer key, token secret
        self.grants: list[str] = []  # grant types served, in order (tests)

    # --- the Python API (tests) ------------------------------------------------------------------------------------

    def issue_refresh_token(self, client_id: str, scope: str = "tweet.read users.read offline.access") -> str:
        """A refresh token as if ``client_id`` had logged in (a seed for a headless install)."""
        token = "sbx2r-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = _Grant(client_id, scope)
        return token

    def expire_access_tokens(self) -> None:
        with self._lock:
            for token in self._access:
                self._access[token] = 0.0

    def pin_for(self, request_token: str) -> str:
        with self._lock:
            return self._request_tokens[request_token][2]

    def refresh_tokens(self) -> set[str]:
        with self._lock:
            return set(self._refresh)

    def access_expired(self, token: str) -> bool:
        """Whether ``token`` is one this sandbox issued and it has expired (or is unknown to it)."""
        if not token.startswith(ACCESS_PREFIX):
            return False
        with self._lock:
            return self._access.get(token, 0.0) <= self.clock()

    def oauth1_secret(self, consumer_key: str, token: str) -> tuple[str, str] | None:
        """(consumer secret, token secret) of an access token issued by ``/oauth/access_token``."""
        with self._lock:
            issued = self.oauth1_tokens.get(token)
        if issued is None or issued[0] != consumer_key or consumer_key not in self.consumers:
            return None
        return self.consumers[consumer_key], issued[1]

    # --- serving -------------------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, headers: dict[str, str],
               url: str) -> _Reply:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if path == "/i/oauth2/authorize" and method == "GET":
            return self._authorize2(query)
        if path == "/2/oauth2/token" and method == "POST":
            return self._token(form, headers.get("authorization") or "")
        if path == "/oauth/request_token" and method == "POST":
            return self._request_token(headers.get("authorization") or "", url, query, form)
        if path == "/oauth/authorize" and method == "GET":
            return self._authorize1(query)
        if path == "/oauth/access_token" and method == "POST":
            return self._access_token(headers.get("authorization") or "", url, query, form)
        return _json(405, {"title": "Method Not Allowed", "detail": f"{method} {path}"})

    def _authorize2(self, q: dict[str, str]) -> _Reply:
        needed = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                  "code_challenge_method")
        missing = [name for name in needed if not q.get(name)]
        if missing:
            return _bad(f"missing {', '.join(missing)}")
        if q["response_type"] != "code" or q["code_challenge_method"] != "S256":
            return _bad("response_type must be code and code_challenge_method S256")
        code = "sbx2c-" + secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = (_Grant(q["client_id"], q["scope"]), q["redirect_uri"], q["code_challenge"])
        parts = urlsplit(q["redirect_uri"])
        extra = urlencode({"state": q["state"], "code": code})
        location = urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))
        return _Reply(302, b"", "text/plain", location)

    def _client_of(self, form: dict[str, str], authorization: str) -> str | _Reply:
        client_id = form.get("client_id", "")
        scheme, _, encoded = authorization.partition(" ")
        if scheme == "Basic":
            try:
                user, _, password = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                return _json(401, {"error": "invalid_client", "error_description": "bad Basic credentials"})
            expected = self.clients.get(unquote(user))
            if expected is None or not hmac.compare_digest(expected, unquote(password)):
                return _json(401, {"error": "invalid_client", "error_description": "Missing valid authorization"})
            return unquote(user)
        if not client_id:
            return _bad("Missing required parameter [client_id].")
        if self.clients.get(client_id) is not None:
            return _json(401, {"error": "unauthorized_client", "error_description": "Missing valid authorization "
                                                                                    "header"})
        return client_id

    def _token(self, form: dict[str, str], authorization: str) -> _Reply:
        client = self._client_of(form, authorization)
        if isinstance(client, _Reply):
            return client
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                found = self._codes.pop(form.get("code", ""), None)
                if found is None:
                    return _bad("Value passed for the authorization code was invalid.", "invalid_grant")
                grant, redirect_uri, challenge = found
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                if grant.client_id != client or form.get("redirect_uri") != redirect_uri:
                    return _bad("client_id or redirect_uri does not match the authorization", "invalid_grant")
                if not hmac.compare_digest(digest, challenge):
                    return _bad("code_verifier does not match the code_challenge", "invalid_grant")
            elif grant_type == "refresh_token":
                old = form.get("refresh_token", "")
                spent = self._refresh.pop(old, None)  # rotation: the old token is spent whatever follows
                if spent is None or spent.client_id != client:
                    if spent is not None:
                        self._refresh[old] = spent
                    return _bad("Value passed for the token was invalid.", "invalid_grant")
                grant = spent
                self.used_refresh.add(old)
            else:
                return _bad(f"unsupported grant_type {grant_type!r}", "unsupported_grant_type")
            self.grants.append(grant_type)
            access = ACCESS_PREFIX + secrets.token_urlsafe(24)
            self._access[access] = self.clock() + self.token_ttl
            answer: dict[str, object] = {"token_type": "bearer", "expires_in": self.token_ttl, "access_token": access,
                                         "scope": grant.scope}
            if "offline.access" in grant.scope.split():
                refresh = "sbx2r-" + secrets.token_urlsafe(24)
                self._refresh[refresh] = grant
                answer["refresh_token"] = refresh
        return _json(200, answer)

    # --- OAuth 1.0a ------------------------------------------------------------------------------------------------

    def _signed(self, authorization: str, url: str, query: dict[str, str], form: dict[str, str],
                token_secret: str) -> dict[str, str] | _Reply:
        scheme, _, rest = authorization.partition(" ")
        params = {k: unquote(v) for k, v in re.findall(r'(\w+)="([^"]*)"', rest)} if scheme == "OAuth" else {}
        if not params.get("oauth_consumer_key") or not params.get("oauth_signature"):
            return _json(401, {"errors": [{"code": 215, "message": "Bad Authentication data."}]})
        key = params["oauth_consumer_key"]
        if key in self.consumers:
            pairs = [*query.items(), *form.items(),
                     *((k, v) for k, v in params.items() if k.startswith("oauth_") and k != "oauth_signature")]
            expected = self.sign("POST", url, pairs, self.consumers[key], token_secret)
            if not hmac.compare_digest(expected, params["oauth_signature"]):
                return _json(401, {"errors": [{"code": 32, "message": "Could not authenticate you."}]})
        return params

    def _request_token(self, authorization: str, url: str, query: dict[str, str], form: dict[str, str]) -> _Reply:
        params = self._signed(authorization, url, query, form, "")
        if isinstance(params, _Reply):
            return params
        if params.get("oauth_callback") != "oob":
            return _json(403, {"errors": [{"code": 417, "message": "Desktop applications only support the "
                                                                  "oauth_callback value 'oob'"}]})
        token, secret, pin = secrets.token_urlsafe(16), secrets.token_urlsafe(24), f"{secrets.randbelow(10**7):07d}"
        with self._lock:
            self._request_tokens[token] = (params["oauth_consumer_key"], secret, pin)
        body = urlencode({"oauth_token": token, "oauth_token_secret": secret, "oauth_callback_confirmed": "true"})
        return _Reply(200, body.encode(), "text/html; charset=utf-8")

    def _authorize1(self, query: dict[str, str]) -> _Reply:
        with self._lock:
            found = self._request_tokens.get(query.get("oauth_token", ""))
        if found is None:
            return _Reply(400, b"<p>This page is no longer valid.</p>", "text/html; charset=utf-8")
        page = f"<p>You've granted access. Enter this PIN to complete the authorization process.</p><code>{found[2]}</code>"
        return _Reply(200, page.encode(), "text/html; charset=utf-8")

    def _access_token(self, authorization: str, url: str, query: dict[str, str], form: dict[str, str]) -> _Reply:
        rest = authorization.partition(" ")[2]
        token = unquote(dict(re.findall(r'(\w+)="([^"]*)"', rest)).get("oauth_token", ""))
        with self._lock:
            found = self._request_tokens.get(token)
        if found is None:
            return _json(401, {"errors": [{"code": 89, "message": "Invalid or expired token."}]})
        params = self._signed(authorization, url, query, form, found[1])
        if isinstance(params, _Reply):
            return params
        verifier = params.get("oauth_verifier") or form.get("oauth_verifier") or query.get("oauth_verifier")
        if verifier != found[2]:
            return _json(401, {"errors": [{"code": 89, "message": "Invalid or expired token."}]})
        access, secret = f"{self.user_id}-{secrets.token_urlsafe(20)}", secrets.token_urlsafe(30)
        with self._lock:
            self._request_tokens.pop(token, None)
            self.oauth1_tokens[access] = (found[0], secret)
        body = urlencode({"oauth_token": access, "oauth_token_secret": secret, "user_id": self.user_id,
                          "screen_name": "sandbox"})
        return _Reply(200, body.encode(), "text/html; charset=utf-8")


__all__ = ["ACCESS_PREFIX", "OAUTH_PATHS", "OAuthState"]
