"""XClient's writes over real HTTP on 127.0.0.1: a stand-in for X's repost and bookmark endpoints that answers a
repeat the ways X does, and the client's typed result (done / already done) decided from status and body."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.sources import SourceError
from service.sources.x_client import WriteResult, XClient

TOKEN = "user-SECRET-write-token-0006"
ME = {"data": {"id": "4242", "name": "me", "username": "me"}}
#: How X words a refused repeat repost (v2 problem details), and the v1.1 shape some answers still carry.
ALREADY_V2 = {"title": "Forbidden", "detail": "You have already retweeted this Tweet.", "type": "about:blank",
              "status": 403}
ALREADY_V1 = {"errors": [{"code": 327, "message": "You have already retweeted this Tweet."}]}
OTHER_403 = {"title": "Forbidden", "detail": "You are not permitted to perform this action.", "type": "about:blank",
             "status": 403}


class FakeX:
    """POST /2/users/4242/retweets|bookmarks: 200 the first time a post is asked for, then ``repeat``: a
    (status, body) answer; ``script`` answers the next POSTs first, whatever they ask."""

    def __init__(self) -> None:
        self.done: set[tuple[str, str]] = set()
        self.repeat: tuple[int, dict] = (403, ALREADY_V2)
        self.script: list[tuple[int, dict]] = []
        self.requests: list[tuple[str, str, dict | None, int]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                fake.answer(self, None)

            def do_POST(self):  # noqa: N802
                fake.answer(self, json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, handler: BaseHTTPRequestHandler, body: dict | None) -> None:
        with self.lock:
            if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
                status, payload = 401, {"title": "Unauthorized", "status": 401}
            elif body is None:
                status, payload = (200, ME) if handler.path == "/2/users/me" else (404, {"title": "Not Found"})
            elif self.script:
                status, payload = self.script.pop(0)
            else:
                collection = handler.path.rsplit("/", 1)[-1]
                key = (collection, str(body.get("tweet_id")))
                if key in self.done:
                    status, payload = self.repeat
                else:
                    self.done.add(key)
                    status, payload = 200, {"data": {{"retweets": "retweeted"}.get(collection, "bookmarked"): True}}
            self.requests.append((handler.command, handler.path, body, status))
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/problem+json" if status >= 400 else "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def posts(self) -> list[tuple[str, str, int]]:
        return [(path, body["tweet_id"], status) for method, path, body, status in self.requests if body]


@pytest.fixture
def fake_x(no_proxy) -> Iterator[FakeX]:
    fake = FakeX()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def client_for(fake: FakeX, **kwargs) -> XClient:
    return XClient(bearer_token=TOKEN, api_base_url=fake.url, timeout=2.0, retries=1, backoff=0.01,
                   sleep=lambda _s: None, **kwargs)


@pytest.mark.parametrize("repeat", [ALREADY_V2, ALREADY_V1], ids=["v2-problem", "v1-code-327"])
def test_a_repeat_repost_is_already_done(fake_x, repeat):
    fake_x.repeat = (403, repeat)
    client = client_for(fake_x)
    assert client.repost("100") is WriteResult.DONE
    assert client.repost("100") is WriteResult.ALREADY_DONE
    assert client.repost("101") is WriteResult.DONE
    assert fake_x.posts() == [("/2/users/4242/retweets", "100", 200), ("/2/users/4242/retweets", "100", 403),
                              ("/2/users/4242/retweets", "101", 200)]
    assert [r[1] for r in fake_x.requests].count("/2/users/me") == 1  # the user id is resolved once


def test_a_repeat_answered_with_200_is_done(fake_x):
    fake_x.repeat = (200, {"data": {"bookmarked": True}})
    client = client_for(fake_x)
    assert client.bookmark("100") is WriteResult.DONE
    assert client.bookmark("100") is WriteResult.DONE
    assert fake_x.posts() == [("/2/users/4242/bookmarks", "100", 200)] * 2


def test_another_403_is_a_fatal_error_not_already_done(fake_x):
    fake_x.script = [(403, OTHER_403)]
    with pytest.raises(SourceError) as caught:
        client_for(fake_x).repost("100")
    assert caught.value.fatal and "403" in str(caught.value) and "not permitted" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert len(fake_x.posts()) == 1  # not retried


def test_an_answer_that_says_not_done_is_an_error(fake_x):
    fake_x.script = [(200, {"data": {"retweeted": False}})]
    with pytest.raises(SourceError) as caught:
        client_for(fake_x).repost("100")
    assert not caught.value.fatal and "retweeted: false" in str(caught.value)


def test_a_server_error_is_retried_then_done(fake_x):
    fake_x.script = [(503, {"title": "Service Unavailable"})]
    assert client_for(fake_x).repost("100") is WriteResult.DONE
    assert [status for _path, _id, status in fake_x.posts()] == [503, 200]


def test_server_errors_exhaust_the_retries(fake_x):
    fake_x.script = [(502, {"title": "Bad Gateway"})] * 2
    with pytest.raises(SourceError) as caught:
        client_for(fake_x).bookmark("100")
    assert not caught.value.fatal and caught.value.retry_after and "after 2 tries" in str(caught.value)
