"""The web face over HTTP: the page, health and readiness, metrics, images and thumbnails from the local cache
(and the cache's bound), the access token, and the safe headers."""

from __future__ import annotations

import io
import re
import sqlite3

import httpx
import pytest
from feedkit import settings, web_client
from PIL import Image

from service.config import ConfigError
from service.feed import feed_entries
from service.media.cache import ImageCache
from service.store import Store
from service.web import create_app, serve_in_thread
from service.web.security import is_loopback

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$')


def entries(data_dir, limit: int = 1000):
    with Store.open(data_dir / "nijifeed.sqlite3") as store:
        return feed_entries(store, limit=limit)


def test_page_lists_the_newest_posts_with_lazy_cached_images_and_paging(polled):
    expected = entries(polled)
    with web_client(web_page_size=3) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        ids = re.findall(r'<article class="post" id="post-([^"]+)"', html)
        assert ids == [e.id for e in expected[:3]]
        thumbs = re.findall(r'<img src="/thumb/([0-9a-f]{64})"[^>]*loading="lazy"', html)
        assert thumbs == [i.sha256 for e in expected[:3] for i in e.images]
        assert expected[0].url in html and f"@{expected[0].author_handle}" in html
        assert "<script>" not in html and " style=" not in html and "onerror" not in html  # nothing inline
        assert '<script src="/static/feed.js" defer>' in html
        more = re.search(r'<a class="more" href="([^"]+)"', html).group(1).replace("&amp;", "&")
        second = client.get(more).text
        assert re.findall(r'id="post-([^"]+)"', second) == [e.id for e in expected[3:6]]
        for asset in ("/static/style.css", "/static/feed.js", "/static/icon.svg"):
            assert client.get(asset).status_code == 200
        assert client.get("/?before=garbage").status_code == 400


def test_empty_feed_says_why(tmp_path):
    with web_client(data_dir=tmp_path / "empty") as client:
        assert "Nothing here yet" in client.get("/").text


def test_liveness_and_readiness(polled):
    with web_client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.json()
        assert client.get("/healthz?ready=1").status_code == 200
    # a last poll older than 3 poll intervals (plus a minute) is not ready
    conn = sqlite3.connect(polled / "nijifeed.sqlite3")
    conn.execute("UPDATE polls SET started_at = '2000-01-01T00:00:00.000+00:00'")
    conn.commit()
    conn.close()
    with web_client() as client:
        stale = client.get("/readyz")
        assert stale.status_code == 503 and "last poll" in stale.json()["problems"][0]
        assert client.get("/healthz").status_code == 200  # alive all the same


def test_readiness_without_any_poll(tmp_path):
    with web_client(data_dir=tmp_path / "fresh") as client:
        response = client.get("/healthz?ready=1")
        assert response.status_code == 503 and response.json()["problems"] == ["no poll yet"]


def test_metrics_are_valid_prometheus_text(polled):
    with web_client() as client:
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$", line), line
            continue
        assert SAMPLE.match(line), f"not a sample line: {line!r}"
        name_labels, value = line.rsplit(" ", 1)
        samples[name_labels] = float(value)
    with Store.open(polled / "nijifeed.sqlite3") as store:
        counts = store.status_counts()
        last = store.last_poll()
        assert samples['nijifeed_media{status="feed"}'] == counts["feed"]
        assert samples["nijifeed_review_queue_size"] == store.open_review_count()
        assert samples["nijifeed_api_reads_total"] == last["reads"] > 0
    assert samples['nijifeed_image_verdicts{verdict="2d"}'] > 0
    assert samples["nijifeed_last_poll_duration_seconds"] > 0
    assert samples['nijifeed_failures{reason="poll_error"}'] == 0


def test_images_and_thumbnails_come_from_the_local_cache(polled, feed_sandbox):
    image = next(i for e in entries(polled) for i in e.images if (i.width or 0) > 480 or (i.height or 0) > 480)
    feed_sandbox.inject("503", times=None, target="media")  # the original host is down: nothing asks it
    try:
        with web_client() as client:
            original = client.get(f"/img/{image.sha256}")
            assert original.status_code == 200 and original.headers["content-type"].startswith("image/")
            assert "immutable" in original.headers["cache-control"]
            assert Image.open(io.BytesIO(original.content)).size == (image.width, image.height)
            thumb = client.get(f"/thumb/{image.sha256}")
            assert thumb.status_code == 200 and thumb.headers["content-type"] in ("image/webp", "image/jpeg")
            assert max(Image.open(io.BytesIO(thumb.content)).size) == 480
            cache = ImageCache.from_settings(settings())
            assert cache.thumb_path(image.sha256, 480).is_file()  # made once, then served from disk
            assert client.get(f"/thumb/{image.sha256}").content == thumb.content
            assert client.get("/img/" + "0" * 64).status_code == 404
            assert client.get("/img/not-a-hash").status_code == 404
            with Store.open(polled / "nijifeed.sqlite3") as store:
                dropped = store.conn.execute("SELECT sha256 FROM images WHERE route = 'dropped' LIMIT 1").fetchone()
            assert client.get(f"/img/{dropped[0]}").status_code == 404  # only the feed's images are served
    finally:
        feed_sandbox.clear_faults()
    with Store.open(polled / "nijifeed.sqlite3") as store:  # the app flushed "last served" when it stopped
        assert store.image_by_sha(image.sha256)["last_served_at"] is not None


def test_cache_bound_evicts_least_recently_served_but_keeps_the_newest_posts(polled):
    feed = entries(polled)
    newest = {i.sha256 for i in feed[0].images}
    with web_client() as client:  # serve an older feed image: it becomes recently used
        recent = feed[-1].images[0].sha256
        assert client.get(f"/thumb/{recent}").status_code == 200
        client.app.state.web.flush_served()
    cache = ImageCache.from_settings(settings())
    with Store.open(polled / "nijifeed.sqlite3") as store:
        total = cache.size_on_disk()
        result = cache.enforce_limit(store, max_bytes=total // 2, keep_entries=1)
        assert result.before == total and result.after <= total // 2 and result.evicted > 0
        assert result.after == cache.size_on_disk()
        evicted = {r["sha256"] for r in store.conn.execute("SELECT sha256 FROM images WHERE cache_path IS NULL")}
        kept = {r["sha256"] for r in store.conn.execute("SELECT sha256 FROM images WHERE cache_path IS NOT NULL")}
        assert evicted and not evicted & newest and recent in kept
        review = {r[0] for r in store.conn.execute(
            "SELECT i.sha256 FROM review_queue q JOIN images i ON i.id = q.image_id WHERE q.resolved_at IS NULL")}
        assert review and review <= kept  # a person still has to see those
        assert all(not cache.path_for(sha).exists() for sha in evicted)
        gone = next(i for e in feed for i in e.images if i.sha256 in evicted)
    with web_client() as client:  # an evicted feed image is answered with its original URL
        for path in (f"/img/{gone.sha256}", f"/thumb/{gone.sha256}"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 302 and response.headers["location"] == gone.url


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_a_non_loopback_bind_needs_a_token(tmp_path, host, cli, monkeypatch):
    with pytest.raises(ConfigError, match="NIJIFEED_WEB_TOKEN"):
        create_app(settings(data_dir=tmp_path, web_host=host))
    monkeypatch.setenv("NIJIFEED_WEB_HOST", host)
    result = cli("web", ok=False)
    assert result.exit_code == 2 and "NIJIFEED_WEB_TOKEN" in result.output  # a bad setting: exit 2
    assert create_app(settings(data_dir=tmp_path, web_host=host, web_token="t0ken"))


def test_loopback_names():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_requests_must_carry_the_token(polled):
    token = "correct-horse-battery-staple"
    with web_client(web_token=token) as client:
        for path in ("/", "/feed.atom", "/feed.json", "/metrics"):
            refused = client.get(path)
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/static/style.css").status_code == 200
        # ?token= on the page: a cookie (not the token itself) and a redirect that drops it from the URL
        handoff = client.get(f"/?token={token}&before=", follow_redirects=False)
        assert handoff.status_code == 303 and handoff.headers["location"] == "/?before="
        cookie = handoff.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
        page = client.get("/")  # the client kept the cookie
        assert page.status_code == 200
        sha = re.search(r'/thumb/([0-9a-f]{64})', page.text).group(1)
        assert client.get(f"/thumb/{sha}").status_code == 200
        client.cookies.clear()
        assert client.get(f"/thumb/{sha}").status_code == 401


def test_every_answer_carries_the_safe_headers(polled, feed_sandbox):
    with web_client(web_token="tok") as client:
        for path in ("/?token=tok", "/healthz", "/feed.atom?token=tok", "/nope", "/metrics"):
            response = client.get(path)
            headers = response.headers
            csp = headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
            assert "'unsafe-inline'" not in csp and "script-src 'self'" in csp
            assert f"img-src 'self' {feed_sandbox.url}" in csp and "https://pbs.twimg.com" in csp
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"


def test_serve_in_thread_serves_on_a_real_socket_and_stops(polled):
    server = serve_in_thread(settings(), port=0)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=server.url, trust_env=False, timeout=5) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/").status_code == 200
    finally:
        server.stop()
    assert not server.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz", trust_env=False, timeout=2)


def test_web_command_serves_in_the_foreground_until_sigterm(polled):
    import os
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", "from service.cli import main; main()", "web", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", line).group(1)
        assert httpx.get(url + "/healthz", trust_env=False, timeout=5).json() == {"status": "ok"}
        assert "post-" in httpx.get(url + "/", trust_env=False, timeout=5).text
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal, so the exit status says what stopped it
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)  # within seconds
        assert "Traceback" not in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
