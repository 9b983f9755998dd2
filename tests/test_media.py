"""The media downloader against a real HTTP server on 127.0.0.1, plus the pure URL helpers.

The server (stdlib ThreadingHTTPServer in a thread) serves each case the downloader must handle: an image, a
404, a 503 then 200, a slow answer, an endless body, a lying Content-Length, redirects to allowed and disallowed
hosts, and a counter of requests in flight. A second server answers on ``localhost``, a host the tests leave out
of the allowlist, and counts its hits: a refused redirect must not reach it at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from service.media import (
    Download,
    Downloader,
    check_url,
    default_allowed_hosts,
    file_url_path,
    media_url,
    redact_url,
    valid_variant,
    variant_url,
)
from service.sources import MediaRef

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # not decoded here: bytes in, bytes out
HUGE_TOTAL = 64 * 1024 * 1024
LIMIT = 1_000_000
#: No TLS here; a context without CA certificates spares each client loading them (100+ ms on a busy machine).
NO_CA_CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
#: The allowlist entries of the two test servers, ``127.0.0.1:<main port>`` and ``localhost:<other port>`` (the
#: allowlist matches host and port), set once they are started.
HOSTS: dict[str, str] = {"main": "127.0.0.1:1", "other": "localhost:1"}


# ------------------------------------------------------------------------------------------------ test server


class MediaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.paths: list[str] = []  # path?query of every request, in order
        self.in_flight = 0  # /delay and /gate requests being answered
        self.delay_done = 0
        self.max_in_flight = 0
        self.huge_sent = 0
        self.gate_waited_out = False  # /gate gave up waiting for its /delay requests
        self.liar_release = threading.Event()  # /liar holds its body back until this is set (or for 30 s)
        self.huge_done = threading.Event()
        self.peer: MediaServer | None = None  # the other server, for cross-host redirects

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:  # clients hanging up early is the point here
        pass


class Handler(BaseHTTPRequestHandler):
    server: MediaServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        srv = self.server
        with srv.lock:
            srv.hits[path] += 1
            srv.paths.append(self.path)
            hits = srv.hits[path]
        if path not in ("/delay", "/gate"):
            return self.route(path, query, hits)
        with srv.lock:  # in flight: counted on /delay and /gate only (other tests leave slow handlers sleeping)
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self.route(path, query, hits)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route(self, path: str, query: dict[str, list[str]], hits: int) -> None:
        srv = self.server
        if path.startswith("/media/"):
            # Like pbs.twimg.com: /media/<id>?format=jpg&name=<variant>, the extension gone from the path.
            if "." in path.rsplit("/", 1)[-1] or query.get("format") != ["jpg"]:
                return self.send(404, b"want /media/<id>?format=jpg&name=...")
            return self.send(200, IMAGE + query.get("name", ["?"])[0].encode(), {"Content-Type": "image/jpeg"})
        if path == "/plain.png" or (path == "/plain" and query.get("format") == ["png"]):
            return self.send(200, IMAGE, {"Content-Type": "image/png"})
        if path == "/missing":
            return self.send(404, b"no")
        if path == "/forbidden":
            return self.send(403, b"no")
        if path == "/flaky":  # 503 the first time, then the image
            return self.send(503, b"busy", {"Retry-After": "0"}) if hits == 1 else self.send(200, IMAGE)
        if path == "/ratelimited":
            return self.send(429, b"slow down", {"Retry-After": "0"}) if hits == 1 else self.send(200, IMAGE)
        if path == "/ratelimited-long":
            return self.send(429, b"slow down", {"Retry-After": "3600"})
        if path == "/broken":
            return self.send(500, b"oops")
        if path == "/slow":  # answers after ``s`` seconds (1.5 by default)
            time.sleep(float(query.get("s", ["1.5"])[0]))
            return self.send(200, IMAGE)
        if path == "/delay":
            time.sleep(float(query["s"][0]))
            self.send(200, IMAGE + query.get("tag", [""])[0].encode())
            with srv.lock:
                srv.delay_done += 1
            return
        if path == "/gate":  # answers only once `n` /delay requests were answered (or after 30 s, noted)
            deadline = time.monotonic() + 30
            while srv.delay_done < int(query["n"][0]):
                if time.monotonic() > deadline:
                    srv.gate_waited_out = True
                    break
                time.sleep(0.01)
            time.sleep(0.1)
            return self.send(200, IMAGE)
        if path == "/huge":  # no Content-Length: the body goes on until the client stops reading
            self.send_response(200)
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                while srv.huge_sent < HUGE_TOTAL:
                    self.wfile.write(chunk)
                    srv.huge_sent += len(chunk)
            except OSError:
                pass
            finally:
                srv.huge_done.set()
            return
        if path == "/liar":  # announces far more than the limit; sends the body only when released
            self.send_response(200)
            self.send_header("Content-Length", str(10 * LIMIT))
            self.end_headers()
            srv.liar_release.wait(30)
            try:
                self.wfile.write(b"\0" * (10 * LIMIT))
            except OSError:
                pass
            return
        if path == "/to-image":
            return self.send(302, headers={"Location": "/plain.png"})
        if path == "/to-peer":
            assert srv.peer is not None
            return self.send(302, headers={"Location": f"http://localhost:{srv.peer.server_address[1]}/plain.png"})
        if path == "/to-evil":
            return self.send(301, headers={"Location": "https://evil.example/x.jpg"})
        if path == "/to-plain-http":
            return self.send(302, headers={"Location": "http://pbs.twimg.com/media/x.jpg"})
        if path == "/loop":
            return self.send(302, headers={"Location": "/loop"})
        return self.send(404, b"unknown test path")


def _start(host: str) -> MediaServer:
    server = MediaServer((host, 0))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers():
    main, other = _start("127.0.0.1"), _start("127.0.0.1")  # `other` is reached as "localhost"
    main.peer = other
    HOSTS.update(main=f"127.0.0.1:{main.server_address[1]}", other=f"localhost:{other.server_address[1]}")
    yield main, other
    for server in (main, other):
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(servers) -> MediaServer:
    main, other = servers
    for srv in servers:
        with srv.lock:
            srv.hits.clear()
            srv.paths.clear()
            srv.max_in_flight = 0
            srv.delay_done = 0
            srv.gate_waited_out = False
            srv.liar_release.clear()
    return main


def downloader(**overrides) -> Downloader:
    options = dict(
        allowed_hosts=frozenset({HOSTS["main"]}),
        concurrency=4,
        timeout=2.0,
        retries=2,
        max_bytes=LIMIT,
        backoff=0.01,
        trust_env=False,  # a developer's HTTP(S)_PROXY must not catch loopback requests
        ssl_context=NO_CA_CONTEXT,
    )
    options.update(overrides)
    return Downloader(**options)


def fetch(url: str, kind: str = "photo", **overrides) -> Download:
    async def go() -> Download:
        async with downloader(**overrides) as dl:
            return await dl.fetch("k1", url, kind)

    return asyncio.run(go())


# ------------------------------------------------------------------------------------------------ over HTTP


def test_fetches_an_image_in_the_configured_variant(server):
    result = fetch(f"{server.base}/media/ABC.jpg", photo_variant="small")
    assert result.ok, result
    assert result.data == IMAGE + b"small"
    assert result.url == f"{server.base}/media/ABC?format=jpg&name=small"
    assert (result.status, result.attempts, result.error, result.retryable) == (200, 1, None, False)
    assert server.paths == ["/media/ABC?format=jpg&name=small"]


def test_orig_and_existing_variant_params(server):
    assert fetch(f"{server.base}/media/ABC?format=jpg&name=large", photo_variant="orig").data == IMAGE + b"orig"
    assert fetch(f"{server.base}/plain.png", photo_variant="small").data == IMAGE
    assert fetch(f"{server.base}/plain.png", photo_variant=None).data == IMAGE  # no variant: fetched as given
    assert server.paths[-2:] == ["/plain?format=png&name=small", "/plain.png"]


def test_404_is_permanent_and_not_retried(server):
    result = fetch(f"{server.base}/missing")
    assert not result.ok and result.data is None
    assert (result.error, result.status, result.attempts, result.retryable) == ("HTTP 404", 404, 1, False)
    assert server.hits["/missing"] == 1
    assert fetch(f"{server.base}/forbidden").attempts == 1


def test_503_then_200_is_retried(server):
    result = fetch(f"{server.base}/flaky")
    assert result.ok and result.data == IMAGE
    assert result.attempts == 2 and server.hits["/flaky"] == 2


def test_429_is_retried_and_a_long_retry_after_ends_the_cycle(server):
    assert fetch(f"{server.base}/ratelimited").attempts == 2
    started = time.monotonic()
    result = fetch(f"{server.base}/ratelimited-long")
    assert time.monotonic() - started < 10  # did not sleep an hour (nor the 30 s cap on a Retry-After it honours)
    assert result.error == "HTTP 429 (retry after 3600s)" and result.retryable and result.attempts == 1


def test_persistent_5xx_gives_up_retryable(server):
    result = fetch(f"{server.base}/broken", retries=2)
    assert result.error == "HTTP 500 after 3 attempts"
    assert result.retryable and result.status == 500 and server.hits["/broken"] == 3


def test_timeout_is_retried_then_reported(server):
    started = time.monotonic()
    result = fetch(f"{server.base}/slow?s=10", timeout=0.2, retries=1)
    assert time.monotonic() - started < 5  # each attempt gave up after 0.2 s: the 10 s answer was not waited for
    assert result.error == "timeout after 2 attempts" and result.retryable and result.attempts == 2


def test_attempt_deadline_bounds_a_whole_attempt(server):
    result = fetch(f"{server.base}/slow", timeout=5.0, attempt_timeout=0.2, retries=0)
    assert result.error == "timeout after 1 attempt" and result.retryable


def test_connection_refused_is_retryable():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = fetch(f"http://127.0.0.1:{port}/x.png", retries=1, allowed_hosts=frozenset({f"127.0.0.1:{port}"}))
    assert result.error == "connection error (ConnectError) after 2 attempts"
    assert result.retryable and result.status is None


def test_size_limit_stops_the_stream_early(server):
    server.huge_done.clear()
    server.huge_sent = 0
    started = time.monotonic()
    result = fetch(f"{server.base}/huge")
    assert result.error == f"too large (>{LIMIT} bytes)"
    assert not result.retryable and result.attempts == 1
    assert server.huge_done.wait(20), "the server is still writing: the client did not hang up"
    assert server.huge_sent < HUGE_TOTAL // 2, server.huge_sent  # socket buffers hold a few MB at most
    assert time.monotonic() - started < 30


def test_content_length_above_the_limit_is_refused_before_reading(server):
    started = time.monotonic()
    try:
        result = fetch(f"{server.base}/liar")
        elapsed = time.monotonic() - started
    finally:
        server.liar_release.set()  # the body was held back for the whole fetch: it can only have been refused unread
    assert result.error == f"too large (>{LIMIT} bytes)" and not result.retryable
    assert elapsed < 10  # refused at the headers, not after waiting (the body was held for up to 30 s)


def test_redirect_to_an_allowed_path_is_followed(server):
    result = fetch(f"{server.base}/to-image")
    assert result.ok and result.data == IMAGE
    assert result.final_url == f"{server.base}/plain.png" and result.url == f"{server.base}/to-image"


def test_redirect_to_a_disallowed_host_is_refused_without_connecting(servers, server):
    _, other = servers
    result = fetch(f"{server.base}/to-peer")
    assert result.error == "redirect refused: host not allowed: localhost"
    assert not result.retryable and result.attempts == 1
    assert sum(other.hits.values()) == 0  # never connected there
    result = fetch(f"{server.base}/to-evil")
    assert result.error == "redirect refused: host not allowed: evil.example"
    result = fetch(f"{server.base}/to-plain-http", allowed_hosts=frozenset({HOSTS["main"], "pbs.twimg.com"}))
    assert result.error == "redirect refused: plain http not allowed: pbs.twimg.com"


def test_redirect_to_another_allowed_host_is_followed(servers, server):
    _, other = servers
    result = fetch(f"{server.base}/to-peer", allowed_hosts=frozenset({HOSTS["main"], HOSTS["other"]}))
    assert result.ok and other.hits["/plain.png"] == 1


def test_redirect_loop_stops(server):
    result = fetch(f"{server.base}/loop")
    assert result.error == "too many redirects (>5)" and not result.retryable
    assert server.hits["/loop"] == 6  # the first request and five redirects, one attempt only


def test_disallowed_first_url_makes_no_request(server):
    result = fetch(f"{server.base}/plain.png", allowed_hosts=frozenset({"pbs.twimg.com"}))
    assert result.error == "host not allowed: 127.0.0.1" and result.attempts == 0
    assert sum(server.hits.values()) == 0


def test_fetch_many_bounds_concurrency_and_yields_as_completed(server):
    async def go() -> list[Download]:
        async with downloader(concurrency=3) as dl:
            items = [("slow", f"{server.base}/gate?n=11")]  # answered after the 11 others
            items += [(f"k{i}", f"{server.base}/delay?s=0.05&tag={i}") for i in range(11)]
            return [d async for d in dl.fetch_many(iter(items))]

    started = time.monotonic()
    results = asyncio.run(go())
    elapsed = time.monotonic() - started
    assert not server.gate_waited_out  # the 11 others were fetched while the first held its slot
    assert len(results) == 12 and all(r.ok for r in results)
    assert sorted(r.media_key for r in results) == sorted(["slow", *(f"k{i}" for i in range(11))])
    assert results[-1].media_key == "slow"  # the first item asked for, the last to finish
    assert server.max_in_flight == 3  # bounded, and actually parallel
    assert elapsed < 20  # well under the gate's 30 s: nothing waited for it


def test_fetch_many_can_be_left_early(server):
    async def go() -> tuple[Download, int, int]:
        async with downloader(concurrency=2) as dl:
            items = ((f"k{i}", f"{server.base}/delay?s=0.05") for i in range(100))
            async with contextlib.aclosing(dl.fetch_many(items)) as results:
                async for first in results:  # noqa: B007 - the first result is what the test returns
                    break
            hits = server.hits["/delay"]
            await asyncio.sleep(0.15)
            # and without aclosing: the downloader's own close cancels what is left
            async for _ in dl.fetch_many(iter([("k", f"{server.base}/delay?s=0.05")] * 50)):
                break
        return first, hits, server.hits["/delay"]

    first, hits, later = asyncio.run(go())
    assert first.ok and hits <= 4  # concurrency 2: the first two, and at most the next two started
    assert later - hits <= 4 + 4  # the rest of both runs was cancelled, not fetched
    time.sleep(0.1)
    assert server.hits["/delay"] == later  # nothing still running after the downloader closed


def test_fetch_many_reports_a_failing_iterable(server):
    def items():
        yield "k1", f"{server.base}/plain.png"
        raise RuntimeError("source broke")

    async def go() -> None:
        async with downloader() as dl:
            async for _ in dl.fetch_many(items()):
                pass

    with pytest.raises(RuntimeError, match="source broke"):
        asyncio.run(go())


def test_malformed_urls_fail_cleanly():
    assert fetch("http://[::1/x.jpg").error == "invalid url"
    assert fetch("").error == "scheme not allowed: none"
    result = fetch("https://pbs.twimg.com:99999/x.jpg", allowed_hosts=frozenset({"pbs.twimg.com"}))
    assert (result.error, result.attempts) == ("invalid url", 0)  # refused before any connection
    assert redact_url("http://h:99999/x?token=1") == "<unparseable url>"


def test_fetch_outside_the_context_is_an_error():
    with pytest.raises(RuntimeError, match="async with"):
        asyncio.run(downloader().fetch("k", "http://127.0.0.1:1/x.png"))


def test_logs_never_show_query_tokens(server, caplog):
    caplog.set_level(logging.DEBUG, logger="service.media")
    fetch(f"{server.base}/missing?token=SECRET123&name=x")
    fetch(f"{server.base}/plain.png?sig=SECRET123")
    assert caplog.records and "SECRET123" not in caplog.text


# ------------------------------------------------------------------------------------------------ file://


def test_file_urls(tmp_path):
    def local(url: str) -> Download:  # the folder source's own files: kind "file", under the configured folder
        return fetch(url, "file", local_root=tmp_path)

    image = tmp_path / "a b.png"
    image.write_bytes(IMAGE)
    result = local(image.as_uri())
    assert result.ok and result.data == IMAGE and result.attempts == 1

    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (LIMIT + 1))
    assert local(big.as_uri()).error == f"too large (>{LIMIT} bytes)"
    assert local((tmp_path / "gone.png").as_uri()).error == "no such file"
    assert local(tmp_path.as_uri()).error == "not a regular file"
    assert local("file:relative/a.png").error == "file url must name an absolute path"
    assert local("file://otherhost/etc/passwd").error == "file url with a host not allowed: otherhost"
    assert not local(big.as_uri()).retryable


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_file_url_to_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert fetch(fifo.as_uri(), "file", local_root=tmp_path).error == "not a regular file"


def test_file_url_path():
    assert str(file_url_path("file:///data/x%20y.jpg")) == "/data/x y.jpg"
    assert str(file_url_path("file://localhost/data/x.jpg")) == "/data/x.jpg"
    with pytest.raises(ValueError):
        file_url_path("https://pbs.twimg.com/media/x.jpg")


# ------------------------------------------------------------------------------------------------ pure helpers


@pytest.mark.parametrize(
    ("url", "variant", "expected"),
    [
        ("https://pbs.twimg.com/media/ABC.jpg", "small", "https://pbs.twimg.com/media/ABC?format=jpg&name=small"),
        ("https://pbs.twimg.com/media/ABC.png", "orig", "https://pbs.twimg.com/media/ABC?format=png&name=orig"),
        ("https://pbs.twimg.com/media/ABC.webp", "900x900", "https://pbs.twimg.com/media/ABC?format=webp&name=900x900"),
        ("https://pbs.twimg.com/media/ABC.JPG", "small", "https://pbs.twimg.com/media/ABC?format=jpg&name=small"),
        ("https://pbs.twimg.com/media/ABC.jpg:large", "small", "https://pbs.twimg.com/media/ABC?format=jpg&name=small"),
        # already in the query form: only name changes, order and other params kept
        (
            "https://pbs.twimg.com/media/ABC?format=jpg&name=large",
            "small",
            "https://pbs.twimg.com/media/ABC?format=jpg&name=small",
        ),
        (
            "https://pbs.twimg.com/media/ABC?format=png",
            "medium",
            "https://pbs.twimg.com/media/ABC?format=png&name=medium",
        ),
        (
            "https://pbs.twimg.com/card_img/1/x?format=jpg&name=600x314",
            "small",
            "https://pbs.twimg.com/card_img/1/x?format=jpg&name=small",
        ),
        # video and GIF previews on pbs follow the same rule
        (
            "https://pbs.twimg.com/ext_tw_video_thumb/1/pu/img/XY.jpg",
            "small",
            "https://pbs.twimg.com/ext_tw_video_thumb/1/pu/img/XY?format=jpg&name=small",
        ),
        (
            "https://pbs.twimg.com/tweet_video_thumb/XY.jpg",
            "small",
            "https://pbs.twimg.com/tweet_video_thumb/XY?format=jpg&name=small",
        ),
        # a sandbox on loopback: the same treatment, other query parameters kept
        (
            "http://127.0.0.1:8080/media/ID1.jpg?x=1&name=large",
            "small",
            "http://127.0.0.1:8080/media/ID1?format=jpg&name=small&x=1",
        ),
        (
            "http://127.0.0.1:8080/media/ID1.jpg?format=jpg&name=large",
            "small",
            "http://127.0.0.1:8080/media/ID1.jpg?format=jpg&name=small",
        ),
        # left alone
        (
            "https://pbs.twimg.com/profile_images/1/me_normal.jpg",
            "small",
            "https://pbs.twimg.com/profile_images/1/me_normal.jpg",
        ),
        ("https://video.twimg.com/tweet_video/XY.mp4", "small", "https://video.twimg.com/tweet_video/XY.mp4"),
        ("https://pbs.twimg.com/media/ABC", "small", "https://pbs.twimg.com/media/ABC"),
        ("https://example.org/.jpg", "small", "https://example.org/.jpg"),
        ("file:///data/a.jpg", "small", "file:///data/a.jpg"),
        ("https://pbs.twimg.com/media/ABC.jpg", None, "https://pbs.twimg.com/media/ABC.jpg"),
        ("https://pbs.twimg.com/media/ABC.jpg", "", "https://pbs.twimg.com/media/ABC.jpg"),
    ],
)
def test_variant_url(url, variant, expected):
    assert variant_url(url, variant) == expected
    assert variant_url(expected, variant) == expected  # idempotent


def test_variant_names():
    assert all(valid_variant(v) for v in ("thumb", "small", "medium", "large", "orig", "360x360", "4096x4096"))
    assert not any(valid_variant(v) for v in ("huge", "x", "12x", "ax1", "SMALL"))
    with pytest.raises(ValueError, match="unknown image variant"):
        variant_url("https://pbs.twimg.com/media/ABC.jpg", "huge")
    with pytest.raises(ValueError):
        Downloader(allowed_hosts=frozenset(), photo_variant="huge")


def test_check_url():
    hosts = default_allowed_hosts("http://127.0.0.1:8080/2")
    assert hosts == {"pbs.twimg.com", "video.twimg.com", "abs.twimg.com", "127.0.0.1:8080"}
    assert default_allowed_hosts("https://api.x.com", extra=["Media.Example."]) >= {"api.x.com", "media.example"}
    assert check_url("https://pbs.twimg.com/media/a?format=jpg&name=small", hosts) is None
    assert check_url("https://PBS.twimg.com./media/a.jpg", hosts) is None
    assert check_url("http://127.0.0.1:8080/media/a.jpg", hosts) is None
    assert check_url("http://pbs.twimg.com/media/a.jpg", hosts) == "plain http not allowed: pbs.twimg.com"
    assert check_url("https://evil.example/a.jpg", hosts) == "host not allowed: evil.example"
    lookalike = "pbs.twimg.com.evil.example"
    assert check_url(f"https://{lookalike}/a.jpg", hosts) == f"host not allowed: {lookalike}"
    assert check_url("ftp://pbs.twimg.com/a.jpg", hosts) == "scheme not allowed: ftp"
    assert check_url("file:///etc/passwd", hosts) == "scheme not allowed: file"
    loopback = frozenset({"localhost:1", "[::1]:1", "127.0.0.1"})
    assert check_url("http://localhost:1/a", loopback) is None
    assert check_url("http://[::1]:1/a", loopback) is None


def test_redact_url():
    assert redact_url("https://user:pw@pbs.twimg.com/media/a?format=jpg&token=SECRET&name=small") == (
        "https://pbs.twimg.com/media/a?format=jpg&name=small"
    )
    assert redact_url("http://[::1]:8080/a?sig=x") == "http://[::1]:8080/a"


def test_download_result():
    ok = Download("k", "https://pbs.twimg.com/media/a?format=jpg&name=small", data=b"x" * 5000, status=200)
    assert ok.ok and "xxxx" not in repr(ok) and "<5000 bytes>" in repr(ok)
    assert not Download("k", "u", error="HTTP 404").ok
    assert not Download("k", "u", data=b"", error="too large (>1 bytes)").ok


def test_media_url_picks_photo_or_preview():
    photo = MediaRef("3_1", "photo", "https://pbs.twimg.com/media/A.jpg")
    video = MediaRef("7_2", "video", None, preview_url="https://pbs.twimg.com/ext_tw_video_thumb/2/pu/img/B.jpg")
    gif = MediaRef("16_3", "animated_gif", None, preview_url="https://pbs.twimg.com/tweet_video_thumb/C.jpg")
    folder = MediaRef("file:abc", "file", "file:///data/inbox/c.png")
    assert [media_url(r) for r in (photo, video, gif, folder)] == [
        photo.url,
        video.preview_url,
        gif.preview_url,
        folder.url,
    ]
    assert media_url(MediaRef("3_9", "video", None)) is None
