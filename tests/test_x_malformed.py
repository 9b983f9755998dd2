"""Malformed X API answers, swept against a local fake API on 127.0.0.1 (issue 9, item 7).

Every wrong-shaped answer (missing or mistyped fields, non-JSON, wrong nesting, error bodies tweepy's parser
chokes on, endless, trickled, inflating or oversized answers) ends in a ``SourceError`` saying what was wrong, or,
when only one item of a page is bad, in that item being left out while the others are kept. No other exception
ever leaves ``XSource.pages``. And a poll whose answer is malformed still downloads and routes the media already
waiting in the store, in the same cycle.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pipelinekit import assert_routed_exactly_once, db, use

from service.sources import SourceError
from service.sources.x_client import XClient
from service.sources.x_parse import parse_page
from service.sources.x_timeline import XSource

TOKEN = "user-SECRET-malformed-sweep-0007"
ME = {"data": {"id": "4242", "name": "me", "username": "me"}}
GOOD = {"id": "1001", "text": "fine https://t.co/m", "author_id": "7", "created_at": "2026-05-01T10:00:00.000Z",
        "attachments": {"media_keys": ["3_1"]}, "entities": {"urls": [{"url": "https://t.co/m", "media_key": "3_1"}]}}
MEDIA = {"media_key": "3_1", "type": "photo", "url": "https://pbs.twimg.com/media/A.jpg", "width": 10, "height": 10}
USER = {"id": "7", "name": "Artist", "username": "artist_7"}

Answer = Callable[[BaseHTTPRequestHandler], None]


# ------------------------------------------------------------------------------------------------ the fake API


def raw(body: bytes, status: int = 200, content_type: str = "application/json", **headers: str) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        if "Content_Length" not in headers:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def js(payload: object, status: int = 200, **headers: str) -> Answer:
    return raw(json.dumps(payload).encode(), status, **headers)


def page(*posts: object, media: object = (MEDIA,), users: object = (USER,), tweets: object = (), **extra) -> Answer:
    """A timeline answer: ``posts`` in data, includes as given (lists by default), a sound meta."""
    includes = {"media": list(media) if isinstance(media, tuple) else media,
                "users": list(users) if isinstance(users, tuple) else users,
                "tweets": list(tweets) if isinstance(tweets, tuple) else tweets}
    return js({"data": list(posts), "includes": includes, "meta": {"newest_id": "1001", "result_count": len(posts)},
               **extra})


def trickled(seconds: float, *, headers_too: bool = False) -> Answer:
    """Headers (or, with ``headers_too``, the status line only) at once, then a byte every 50 ms for ``seconds``."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        wfile = handler.wfile

        def drip(data: bytes) -> None:
            for byte in data:
                wfile.write(bytes([byte]))
                wfile.flush()
                time.sleep(0.05)
                if time.monotonic() > started + seconds:
                    return

        try:
            if headers_too:
                wfile.write(b"HTTP/1.1 200 OK\r\n")
                drip(b"".join(f"X-Filler-{i}: {'a' * 10}\r\n".encode() for i in range(10_000)))
                return
            body = json.dumps({"data": [GOOD]}).encode() * 1000
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            drip(body)
        except OSError:
            return  # the client hung up: the point

    return answer


def gzip_bomb(megabytes: int) -> Answer:
    """A small gzip body that inflates to ``megabytes`` MB of a JSON string."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    parts = [packer.compress(b'{"data": [], "padding": "')]
    block = b"a" * 2**20
    parts += [packer.compress(block) for _ in range(megabytes)]
    parts += [packer.compress(b'"}'), packer.flush()]
    return raw(b"".join(parts), Content_Encoding="gzip")


def truncated() -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "5000")
        handler.end_headers()
        handler.wfile.write(b'{"data": [{"id": "1001", "te')
        handler.close_connection = True

    return answer


def declared_huge() -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(10**9))
        handler.end_headers()
        handler.wfile.write(b"{")
        handler.close_connection = True

    return answer


class FakeApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.me: Answer = js(ME)
        self.timeline: Answer = page(GOOD)
        self.hits = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:  # clients hanging up early is the point here
        pass


class _Handler(BaseHTTPRequestHandler):
    server: FakeApi
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return js({"title": "Unauthorized"}, 401)(self)
        if self.path.startswith("/2/users/me"):
            return self.server.me(self)
        self.server.hits += 1
        return self.server.timeline(self)


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeApi]:
    server = FakeApi()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(fake_api: FakeApi, no_proxy) -> FakeApi:
    fake_api.me, fake_api.timeline, fake_api.hits = js(ME), page(GOOD), 0
    return fake_api


def source(api: FakeApi, **client) -> XSource:
    options = {"bearer_token": TOKEN, "api_base_url": api.url, "timeout": 1.0, "retries": 0,
               "sleep": lambda seconds: None}
    options.update(client)
    return XSource(XClient(**options), max_results=100, max_pages=1)


# ------------------------------------------------------------------------------------------------ the sweep

DEEP = b"[" * 100_000 + b"]" * 100_000
BAD = {"id": "1002", "text": "bad"}

#: Answers of the page itself that are malformed: the poll ends with a SourceError.
REFUSED: dict[str, Answer] = {
    "not JSON": raw(b"<html>busy</html>", content_type="text/html"),
    "empty body": raw(b""),
    "a JSON array": js([GOOD]),
    "a JSON string": js("data"),
    "JSON null": js(None),
    "a JSON number": js(5),
    "data an object": js({"data": GOOD}),
    "data a string": js({"data": "posts"}),
    "data a number": js({"data": 3}),
    "includes a list": js({"data": [GOOD], "includes": [MEDIA]}),
    "includes.media an object": page(GOOD, media={"3_1": MEDIA}),
    "includes.users a string": page(GOOD, users="artist_7"),
    "includes.tweets a number": page(GOOD, tweets=4),
    "meta a list": js({"data": [GOOD], "meta": ["1001"]}),
    "meta.next_token a number": js({"data": [GOOD], "meta": {"newest_id": "1001", "next_token": 7}}),
    "meta.newest_id not an id": js({"data": [GOOD], "meta": {"newest_id": "newest"}}),
    "errors an object": page(GOOD, errors={"title": "Not Found Error"}),
    "JSON nested too deep": raw(DEEP),
    "an integer too long to read": raw(b'{"data": [{"id": ' + b"9" * 5000 + b"}]}"),
    "a gzip body that is not gzip": raw(json.dumps({"data": [GOOD]}).encode(), Content_Encoding="gzip"),
    "a body cut short": truncated(),
    "a body declared at 1 GB": declared_huge(),
    "204 without a body": raw(b"", 204),
    "a redirect elsewhere": raw(b"", 302, Location="http://127.0.0.1:9/elsewhere"),
    "more posts than asked for": js({"data": [{"id": str(10**6 + i)} for i in range(200_000)],
                                     "meta": {"newest_id": str(10**6 + 199_999)}}),
    "more referenced posts than posts can bring": page(GOOD, tweets=tuple({"id": str(5000 + i)} for i in range(301))),
    # error statuses whose bodies or headers tweepy's own parser would choke on
    "429 with a reset that is not a number": js({"title": "Too Many Requests"}, 429, x_rate_limit_reset="soon"),
    "429 with a reset centuries away": js({"title": "Too Many Requests"}, 429, x_rate_limit_reset="99999999999"),
    "503 with a JSON array": js([1, 2], 503),
    "403 with errors a number": js({"errors": 5}, 403),
    "400 with detail a number": js({"detail": 5}, 400),
    "401 nested too deep": raw(DEEP, 401),
    "404 with errors of null and numbers": js({"errors": [None, 1]}, 404),
    "403 with a message that is a number": js({"errors": [{"message": 5}]}, 403),
    "400 with error beside errors a string": js({"errors": "x", "error": "y"}, 400),
}

#: Answers where one post of data is malformed: that post is skipped, the good one kept.
SKIPPED: dict[str, object] = {
    "a post that is a string": "1002",
    "a post that is null": None,
    "a post without an id": {"text": "no id"},
    "an id that is a number": {"id": 1002},
    "an id that is not digits": {"id": "abc"},
    "an id of 20 digits": {"id": "1" * 20},
    "text a number": {**BAD, "text": 5},
    "created_at not a time": {**BAD, "created_at": "yesterday"},
    "author_id an object": {**BAD, "author_id": {"id": "7"}},
    "referenced_tweets an object": {**BAD, "referenced_tweets": {"type": "quoted", "id": "1"}},
    "a reference without an id": {**BAD, "referenced_tweets": [{"type": "quoted"}]},
    "attachments a list": {**BAD, "attachments": ["3_1"]},
    "media_keys a string": {**BAD, "attachments": {"media_keys": "3_1"}},
    "media_keys numbers": {**BAD, "attachments": {"media_keys": [3, 1]}},
    "entities.urls an object": {**BAD, "entities": {"urls": {"url": "https://t.co/m"}}},
}

#: Answers where one item of includes is malformed: it is ignored (as if absent); the post is kept.
IGNORED: dict[str, Answer] = {
    "a media url that is a number": page(GOOD, media=({**MEDIA, "url": 5},)),
    "a media url that is a list": page(GOOD, media=({**MEDIA, "url": ["https://pbs.twimg.com/media/A.jpg"]},)),
    "a media type that is a number": page(GOOD, media=({**MEDIA, "type": 1},)),
    "a media item without a key": page(GOOD, media=({k: v for k, v in MEDIA.items() if k != "media_key"},)),
    "a media width that is a string": page(GOOD, media=({**MEDIA, "width": "10"},)),
    "a media item that is a string": page(GOOD, media=("3_1",)),
    "a username that is an object": page(GOOD, users=({**USER, "username": {"name": "x"}},)),
    "a username that is not a handle": page(GOOD, users=({**USER, "username": "a/../b"},)),
    "a user id that is a number": page(GOOD, users=({**USER, "id": 7},)),
    "a referenced post with a bad id": page(
        GOOD, {"id": "1003", "referenced_tweets": [{"type": "retweeted", "id": "1004"}]},
        tweets=({"id": 1004, "attachments": {"media_keys": ["3_1"]}},)),
}

#: users/me answers of the wrong shape.
ME_REFUSED: dict[str, Answer] = {
    "me: data a list": js({"data": [ME["data"]]}),
    "me: no id": js({"data": {"username": "me"}}),
    "me: an id that is a number": js({"data": {"id": 4242}}),
    "me: not JSON": raw(b"oops", content_type="text/plain"),
}


def _outcome(src: XSource):
    try:
        return list(src.pages(None))
    except SourceError as exc:
        return exc


@pytest.mark.parametrize("name", REFUSED)
def test_a_malformed_page_is_a_source_error(api, name):
    api.timeline = REFUSED[name]
    outcome = _outcome(source(api))
    assert isinstance(outcome, SourceError), f"{name}: {outcome!r}"
    message = str(outcome)
    assert message and "\n" not in message and len(message) < 600, message
    assert TOKEN not in message


@pytest.mark.parametrize("name", SKIPPED)
def test_a_malformed_post_is_skipped_and_the_others_kept(api, name, caplog):
    api.timeline = page(SKIPPED[name], GOOD)
    outcome = _outcome(source(api))
    assert not isinstance(outcome, SourceError), f"{name}: {outcome}"
    (only,) = outcome
    assert [p.id for p in only.posts] == ["1001"], name
    assert [m.media_key for m in only.posts[0].media] == ["3_1"]
    assert only.reads == 2  # both were billed
    assert any("skipped" in e for e in only.errors) and "skipped" in caplog.text
    assert all("\n" not in e for e in only.errors)


@pytest.mark.parametrize("name", IGNORED)
def test_a_malformed_include_is_ignored_and_its_post_kept(api, name):
    api.timeline = IGNORED[name]
    outcome = _outcome(source(api))
    assert not isinstance(outcome, SourceError), f"{name}: {outcome}"
    (only,) = outcome
    assert "1001" in [p.id for p in only.posts], name
    for post in only.posts:
        assert all(isinstance(m.url, str) for m in post.media if m.kind == "photo")
        assert post.author_handle in (None, "artist_7")
        assert post.original is None or post.original.id != "1004"


@pytest.mark.parametrize("name", ME_REFUSED)
def test_a_malformed_users_me_is_a_source_error(api, name):
    api.me = ME_REFUSED[name]
    outcome = _outcome(source(api))
    assert isinstance(outcome, SourceError) and "users/me" in str(outcome), f"{name}: {outcome!r}"


def test_the_sweep_covers_thirty_malformed_answers():
    assert len(REFUSED) + len(SKIPPED) + len(IGNORED) + len(ME_REFUSED) >= 30


def test_a_rate_limit_with_a_nonsense_reset_still_pauses_for_a_window(api):
    for reset in ("soon", "99999999999", "inf", "nan"):
        api.timeline = js({"title": "Too Many Requests"}, 429, x_rate_limit_reset=reset)
        outcome = _outcome(source(api))
        assert isinstance(outcome, SourceError) and "rate limit" in str(outcome)
        assert outcome.retry_after == 900.0, reset


# ------------------------------------------------------------------------------------------------ bounds


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_trickling_answer_is_cut_at_the_deadline(api, headers_too):
    """requests' timeout is per read: a byte every 50 ms never trips a 1 s timeout; the deadline does."""
    api.timeline = trickled(30.0, headers_too=headers_too)
    started = time.monotonic()
    outcome = _outcome(source(api, timeout=1.0, retries=1))
    elapsed = time.monotonic() - started
    assert isinstance(outcome, SourceError) and "within 1 s" in str(outcome), outcome
    assert elapsed < 6, elapsed  # two tries of at most a second each, not 2 x 30 s
    assert api.hits == 2  # retried once, like a timeout


def test_a_gzip_answer_is_not_inflated_past_the_cap(api):
    api.timeline = gzip_bomb(400)  # ~400 KB on the wire, 400 MB inflated
    tracemalloc.start()
    try:
        outcome = _outcome(source(api))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(outcome, SourceError) and "cap" in str(outcome), outcome
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_the_size_cap_is_a_setting_of_the_client(api):
    api.timeline = page(GOOD)
    assert not isinstance(_outcome(source(api)), SourceError)
    outcome = _outcome(source(api, max_answer_bytes=100))
    assert isinstance(outcome, SourceError) and "100-byte cap" in str(outcome)


def test_a_gzip_answer_within_the_cap_is_read(api):
    body = json.dumps({"data": [GOOD], "includes": {"media": [MEDIA], "users": [USER]},
                       "meta": {"newest_id": "1001"}}).encode()
    api.timeline = raw(gzip.compress(body), Content_Encoding="gzip")
    (only,) = _outcome(source(api))
    assert [p.id for p in only.posts] == ["1001"] and only.posts[0].author_handle == "artist_7"


def test_a_page_longer_than_max_results_is_refused_before_anything_is_stored():
    body = {"data": [{"id": str(10**6 + i)} for i in range(101)], "meta": {"newest_id": str(10**6 + 100)}}
    with pytest.raises(SourceError, match="101 posts on a page of at most 100"):
        parse_page(body, max_posts=100)
    assert len(parse_page(body).posts) == 101  # without a cap (a caller that asked for nothing) it is read


def test_a_page_without_newest_id_uses_its_newest_post():
    body = {"data": [{"id": "5"}, {"id": "70"}, {"id": "9"}]}
    assert parse_page(body).newest_id == "70"


# ------------------------------------------------------------------------------------------------ end to end


def test_a_malformed_answer_does_not_stop_pending_media(service_env, sandbox, cli, monkeypatch):
    """The media a first poll could not download (the media host answering 503) are downloaded and routed by the
    next poll even though its timeline answer is malformed: the cycle goes on after the SourceError."""
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_DOWNLOAD_RETRIES", "0")
    sandbox.inject("503", target="media", times=None)
    cli("poll")
    conn = db(service_env)
    pending = conn.execute("SELECT count(*) FROM media WHERE status = 'pending'").fetchone()[0]
    assert pending > 10
    sandbox.clear_faults()
    sandbox.publish(3)
    sandbox.inject("malformed", target="timeline", json={"data": {"id": "not a list"}})
    result = cli("poll", ok=False)
    assert result.exit_code == 1 and "malformed" in result.output and "Traceback" not in result.output
    assert conn.execute("SELECT count(*) FROM media WHERE status = 'pending'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM media WHERE status IN ('feed', 'review', 'dropped')").fetchone()[0]
    assert_routed_exactly_once(conn)
    poll = conn.execute("SELECT error FROM polls ORDER BY id DESC").fetchone()
    assert "malformed" in poll["error"]
    cli("poll")  # the next good answer is read as usual: the cursor did not move past the refused page
    assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == len(sandbox.posts())
