"""``nijifeed login``'s two flows, without a browser on this machine: the user opens a URL anywhere and pastes back
what X shows (the URL it redirected to, or a PIN). The tokens go to ``DATA_DIR/x_tokens.json`` (``x_tokens``).

* **OAuth 2.0 Authorization Code with PKCE** (tweepy's ``OAuth2UserHandler`` makes the verifier and exchanges the
  code): scopes ``tweet.read users.read offline.access`` (``offline.access``: a refresh token), plus
  ``tweet.write`` when ``NIJIFEED_FORWARD_X_REPOST`` and ``bookmark.write`` when ``NIJIFEED_FORWARD_X_BOOKMARK``
  is on. The authorize page is https://x.com/i/oauth2/authorize (``NIJIFEED_X_AUTHORIZE_URL``; off X, the API
  base URL's ``/i/oauth2/authorize``, which the sandbox serves); the token endpoint is on the API base URL. The
  pasted URL's ``state`` must match, so a URL from another attempt is refused.
* **OAuth 1.0a PIN-based** (tweepy's ``OAuth1UserHandler``, callback ``oob``), its three endpoints on the API
  base URL.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
import tweepy
from oauthlib.oauth2 import OAuth2Error  # type: ignore[import-untyped]
from requests_oauthlib import OAuth2Session  # type: ignore[import-untyped]

from service.errors import InputError
from service.sources import SourceError
from service.sources.x_client import DEFAULT_API_BASE_URL, REDACTOR
from service.sources.x_tokens import TokenFile, oauth2_record

if TYPE_CHECKING:
    from service.config import Settings

X_AUTHORIZE_URL = "https://x.com/i/oauth2/authorize"
BASE_SCOPES = ("tweet.read", "users.read", "offline.access")


def scopes_for(settings: Settings) -> list[str]:
    """The OAuth 2.0 scopes this install needs: reading, plus the writes of the X forwarders switched on."""
    scopes = list(BASE_SCOPES)
    if settings.forward_x_repost:
        scopes.append("tweet.write")
    if settings.forward_x_bookmark:
        scopes.append("bookmark.write")
    return scopes


def authorize_url_base(settings: Settings) -> str:
    if settings.x_authorize_url:
        return settings.x_authorize_url
    base = settings.x_api_base_url.rstrip("/")
    return X_AUTHORIZE_URL if base == DEFAULT_API_BASE_URL else base + "/i/oauth2/authorize"


def _rewrite(base_url: str, url: str) -> str:
    base = base_url.rstrip("/")
    return base + url[len(DEFAULT_API_BASE_URL):] if url.startswith(DEFAULT_API_BASE_URL) else url


class _OAuth2Handler(tweepy.OAuth2UserHandler):
    """tweepy's handler, its token endpoint on the API base URL, with a timeout."""

    def __init__(self, *, base_url: str, timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._base_url = base_url
        self._timeout = timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        # Only the token endpoint is asked through this session, never with a token; requests' own request,
        # since oauthlib's refuses the http:// of a sandbox or a local proxy.
        for oauth_only in ("withhold_token", "client_id", "client_secret"):
            kwargs.pop(oauth_only, None)
        kwargs["timeout"] = kwargs.get("timeout") or self._timeout
        return requests.Session.request(self, method, _rewrite(self._base_url, url), *args, **kwargs)

    def exchange(self, code: str) -> dict[str, Any]:
        """The code for tokens at ``/2/oauth2/token``, with the PKCE verifier (tweepy's ``fetch_token`` takes only
        an https:// redirect URL; the sandbox's callback may be http://)."""
        os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")  # X may grant fewer scopes than asked: stored
        with quiet_oauth_loggers():
            return dict(OAuth2Session.fetch_token(self, DEFAULT_API_BASE_URL + "/2/oauth2/token", code=code,
                                                  auth=self.auth, include_client_id=True,
                                                  code_verifier=self._client.code_verifier))


@contextmanager
def quiet_oauth_loggers() -> Iterator[None]:
    """requests-oauthlib and oauthlib log the tokens they obtain at DEBUG (``-v``): not while they obtain ours."""
    loggers = [logging.getLogger(name) for name in ("requests_oauthlib", "oauthlib")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class _OAuth1Handler(tweepy.OAuth1UserHandler):
    def __init__(self, *args: Any, base_url: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._base_url = base_url

    def _get_oauth_url(self, endpoint: str) -> str:
        return self._base_url.rstrip("/") + "/oauth/" + endpoint


@dataclass
class OAuth2Login:
    """One OAuth 2.0 attempt: show ``url``, then ``finish(pasted)``."""

    settings: Settings
    client_id: str
    client_secret: str | None
    scopes: list[str]
    url: str = ""
    _handler: _OAuth2Handler | None = field(default=None, repr=False)
    _state: str = field(default="", repr=False)

    @classmethod
    def start(cls, settings: Settings, *, client_id: str, client_secret: str | None = None) -> OAuth2Login:
        login = cls(settings, client_id, client_secret, scopes_for(settings))
        handler = _OAuth2Handler(base_url=settings.x_api_base_url, timeout=settings.http_timeout,
                                 client_id=client_id, redirect_uri=settings.x_redirect_uri, scope=login.scopes,
                                 client_secret=client_secret)
        verifier = handler._client.create_code_verifier(128)
        challenge = handler._client.create_code_challenge(verifier, "S256")
        state = handler.new_state()
        # Built here rather than by oauthlib, which refuses an http:// authorize page (the sandbox's).
        query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": settings.x_redirect_uri,
                           "scope": " ".join(login.scopes), "state": state, "code_challenge": challenge,
                           "code_challenge_method": "S256"})
        login.url = f"{authorize_url_base(settings)}?{query}"
        login._handler, login._state = handler, state
        return login

    def finish(self, pasted: str) -> dict[str, Any]:
        """Exchange the code in the pasted redirect URL for tokens and save them; the stored record."""
        assert self._handler is not None
        query = parse_qs(urlsplit(pasted.strip()).query)
        if "error" in query:
            raise InputError(f"X refused the authorization: {query['error'][0]} "
                             f"{(query.get('error_description') or [''])[0]}".strip())
        code = (query.get("code") or [""])[0]
        if not code:
            raise InputError("that is not the URL X redirected to: it has no code= (paste the whole address from "
                             "the browser's address bar, even if the page did not load)")
        if (query.get("state") or [""])[0] != self._state:
            raise InputError("that URL belongs to another login attempt (its state= does not match): open the URL "
                             "printed above and paste where it leads")
        try:
            answer = self._handler.exchange(code)
        except (requests.RequestException, OSError) as exc:
            raise SourceError(f"cannot reach the X token endpoint: {type(exc).__name__}", fatal=True) from None
        except OAuth2Error as exc:  # invalid_grant...: X's answer
            description = REDACTOR.redact(str(exc.description or exc.error))[:200]
            raise SourceError(f"X refused the code: {exc.error}: {description}", fatal=True) from None
        record = oauth2_record(dict(answer), client_id=self.client_id, client_secret=self.client_secret,
                               now=time.time(), previous_scope=" ".join(self.scopes))
        TokenFile(self.settings.x_tokens_path).save(record)
        return record


@dataclass
class OAuth1Login:
    """One OAuth 1.0a PIN attempt: show ``url``, then ``finish(pin)``."""

    settings: Settings
    consumer_key: str
    consumer_secret: str
    url: str = ""
    _handler: _OAuth1Handler | None = field(default=None, repr=False)

    @classmethod
    def start(cls, settings: Settings, *, consumer_key: str, consumer_secret: str) -> OAuth1Login:
        login = cls(settings, consumer_key, consumer_secret)
        handler = _OAuth1Handler(consumer_key, consumer_secret, callback="oob", base_url=settings.x_api_base_url)
        try:
            login.url = handler.get_authorization_url()
        except tweepy.TweepyException as exc:
            raise SourceError(f"X refused the consumer keys (POST /oauth/request_token): {_short(exc)}",
                              fatal=True) from None
        login._handler = handler
        return login

    def finish(self, pin: str) -> dict[str, Any]:
        assert self._handler is not None
        pin = pin.strip()
        if not pin.isdigit():
            raise InputError("the PIN is the number X shows after you authorize the app")
        try:
            with quiet_oauth_loggers():
                access_token, access_secret = self._handler.get_access_token(pin)
        except tweepy.TweepyException as exc:
            raise SourceError(f"X refused the PIN (POST /oauth/access_token): {_short(exc)}", fatal=True) from None
        record = {"kind": "oauth1", "consumer_key": self.consumer_key, "consumer_secret": self.consumer_secret,
                  "access_token": access_token, "access_token_secret": access_secret}
        TokenFile(self.settings.x_tokens_path).save(record)
        return record


def _short(exc: BaseException) -> str:
    return " ".join(REDACTOR.redact(str(exc)).split())[:200]


__all__ = ["BASE_SCOPES", "X_AUTHORIZE_URL", "OAuth1Login", "OAuth2Login", "authorize_url_base", "scopes_for"]
