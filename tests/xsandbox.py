"""Helpers for tests that talk to the X API sandbox over real HTTP on 127.0.0.1.

A pytest plugin (listed in ``conftest.pytest_plugins``): its fixtures (``no_proxy``, ``sandbox``, ``http``) need no
import. Import the constants and helper functions as usual (``from xsandbox import make_source``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from service.sandbox import Sandbox
from service.sources import Page
from service.sources.x_client import XClient
from service.sources.x_timeline import XSource

# Distinctive fake credentials: tests assert these strings never reach logs, messages or reprs.
CONSUMER_KEY = "ck-SECRET-consumer-key-0001"
CONSUMER_SECRET = "cs-SECRET-consumer-secret-0002"
ACCESS_TOKEN = "1598741203367485440-SECRETaccesstoken0003"
ACCESS_TOKEN_SECRET = "ats-SECRET-access-token-secret-0004"
BEARER_TOKEN = "user-SECRET-oauth2-user-token-0005"
SECRETS = (CONSUMER_KEY, CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_TOKEN_SECRET, BEARER_TOKEN)

EXPANSIONS = (
    "attachments.media_keys,referenced_tweets.id,referenced_tweets.id.attachments.media_keys,author_id,"
    "referenced_tweets.id.author_id"
)
FULL_QUERY = {
    "expansions": EXPANSIONS,
    "tweet.fields": "created_at,author_id,referenced_tweets,attachments,entities",
    "media.fields": "url,preview_image_url,type,width,height,alt_text,media_key",
    "user.fields": "name,username,profile_image_url",
}


class Sleeps(list):
    """An injectable ``sleep`` that records the delays instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


_SOURCE_ARGS = ("max_results", "max_pages", "window_posts", "clock")


def make_client(sandbox: Sandbox, mode: str = "bearer", **overrides) -> XClient:
    """An XClient against ``sandbox`` with fast test settings (2 s timeout, no real backoff sleeps)."""
    if mode == "oauth1":
        creds = {"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET, "access_token": ACCESS_TOKEN,
                 "access_token_secret": ACCESS_TOKEN_SECRET}
    elif mode == "bearer":
        creds = {"bearer_token": BEARER_TOKEN}
    else:
        raise ValueError(mode)
    kwargs = {"api_base_url": sandbox.url, "timeout": 2.0, "retries": 2, "backoff": 0.01, "sleep": Sleeps(), **creds}
    kwargs.update(overrides)
    return XClient(**kwargs)


def make_source(sandbox: Sandbox, mode: str = "bearer", **overrides) -> XSource:
    """An XSource against ``sandbox``: the client's settings as in ``make_client``, pages of 100, at most 10."""
    paging = {"max_results": 100, "max_pages": 10}
    paging.update({k: overrides.pop(k) for k in _SOURCE_ARGS if k in overrides})
    return XSource(make_client(sandbox, mode, **overrides), **paging)


def collect(source, since_id: str | None = None) -> list[Page]:
    return list(source.pages(since_id))


def all_posts(pages: list[Page]):
    return [post for page in pages for post in page.posts]


def timeline_requests(sandbox: Sandbox):
    return [r for r in sandbox.requests if r.endpoint == "timeline"]


@pytest.fixture
def no_proxy(monkeypatch):
    """Loopback traffic never goes through a proxy configured in the environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def sandbox(request, no_proxy) -> Iterator[Sandbox]:
    """A running sandbox; parametrize indirectly with a dict of ``Sandbox`` keyword arguments."""
    kwargs = getattr(request, "param", None) or {}
    with Sandbox(**kwargs) as running:
        yield running


@pytest.fixture
def http(sandbox) -> Iterator[httpx.Client]:
    """A plain HTTP client on the sandbox, authorised as a user (bearer)."""
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {BEARER_TOKEN}"}, timeout=5,
                      trust_env=False) as client:
        yield client


def all_log_text(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records)
