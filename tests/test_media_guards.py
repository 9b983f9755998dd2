"""What the outside can make the downloader read (issue 9, items 8 and 9): ``file://`` URLs only for the folder
source's own files, the host allowlist matching host *and* port, and a malformed webhook URL never printed."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image
from pipelinekit import db, use

from service.config import ConfigError, Settings, load_settings
from service.media import Download, check_url, default_allowed_hosts
from service.pipeline.build import make_downloader


def fetch(settings: Settings, url: str, *kind: str) -> Download:
    async def go() -> Download:
        async with make_downloader(settings) as dl:
            return await dl.fetch("k1", url, *kind)

    return asyncio.run(go())


def unique_jpeg(path) -> bytes:
    """A JPEG no other test or sample has: its bytes identify it in the store."""
    rng = random.Random(str(path))
    image = Image.new("RGB", (64, 48))
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(64 * 48)])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG")
    return path.read_bytes()


# ------------------------------------------------------------------------------------------------ file:// (item 8)


def test_a_file_url_in_an_x_answer_is_not_read(service_env, sandbox, cli, monkeypatch, tmp_path):
    """A photo whose URL is file:// (an answer of the X API, or anything posing as it) is refused unread: it
    never reaches the store's images, the cache or the feed."""
    secret = tmp_path / "private" / "secret.jpg"
    data = unique_jpeg(secret)
    chosen: list[str] = []

    def to_file(payload: dict) -> dict:
        for item in payload["includes"]["media"]:
            if item.get("type") == "photo":
                item["url"] = secret.as_uri()
                chosen.append(item["media_key"])
                break
        return payload

    use(monkeypatch, sandbox)
    sandbox.inject("malformed", target="timeline", mutate=to_file)
    cli("poll")
    (key,) = chosen
    conn = db(service_env)
    row = conn.execute("SELECT status, reason, image_id FROM media WHERE media_key = ?", (key,)).fetchone()
    assert row["status"] == "failed" and row["image_id"] is None
    assert row["reason"] == "scheme not allowed: file"
    sha = hashlib.sha256(data).hexdigest()
    assert conn.execute("SELECT count(*) FROM images WHERE sha256 = ?", (sha,)).fetchone()[0] == 0
    assert not list((service_env / "cache").rglob(f"{sha}*"))
    assert key not in cli("feed", "--json").stdout


def test_local_files_only_for_the_folder_sources_own_paths(tmp_path):
    inbox, outside = tmp_path / "inbox", tmp_path / "outside" / "secret.jpg"
    own = unique_jpeg(inbox / "own.jpg")
    unique_jpeg(outside)
    (inbox / "link.jpg").symlink_to(outside)
    folder = Settings(source=f"folder:{inbox}")

    result = fetch(folder, (inbox / "own.jpg").as_uri(), "file")
    assert result.ok and result.data == own
    for url in (outside.as_uri(), f"file://{inbox}/../outside/secret.jpg", (inbox / "link.jpg").as_uri()):
        result = fetch(folder, url, "file")
        assert result.data is None and result.error == "local file outside the source folder", url
        assert not result.retryable
    # a media of another kind (an X photo) never gets a local file, even one inside the folder
    for kind in ("photo", "video", "animated_gif"):
        assert fetch(folder, (inbox / "own.jpg").as_uri(), kind).error == "scheme not allowed: file"
    assert fetch(folder, (inbox / "own.jpg").as_uri()).error == "scheme not allowed: file"  # no kind: remote
    # the X source has no folder: no local file at all
    x = Settings(source="x")
    assert fetch(x, (inbox / "own.jpg").as_uri(), "file").error == "local files not allowed: no folder source"
    assert fetch(x, (inbox / "own.jpg").as_uri(), "photo").error == "scheme not allowed: file"


# ------------------------------------------------------------------------------------------------ ports (item 9)


def test_the_allowlist_matches_the_port_too():
    hosts = default_allowed_hosts("http://127.0.0.1:8080", extra=["cdn.example:8443", "[::1]:9000", "plain.example"])
    assert check_url("https://pbs.twimg.com/media/a.jpg", hosts) is None
    assert check_url("https://pbs.twimg.com:443/media/a.jpg", hosts) is None
    assert check_url("https://pbs.twimg.com:8443/media/a.jpg", hosts) == "port not allowed: pbs.twimg.com:8443"
    assert check_url("http://127.0.0.1:8080/media/a.jpg", hosts) is None
    assert check_url("http://127.0.0.1:9090/media/a.jpg", hosts) == "port not allowed: 127.0.0.1:9090"
    assert check_url("http://127.0.0.1/media/a.jpg", hosts) == "port not allowed: 127.0.0.1:80"
    assert check_url("https://cdn.example:8443/a.jpg", hosts) is None
    assert check_url("https://cdn.example/a.jpg", hosts) == "port not allowed: cdn.example:443"
    assert check_url("http://[::1]:9000/a.jpg", hosts) is None
    assert check_url("http://[::1]:9001/a.jpg", hosts) == "port not allowed: [::1]:9001"
    assert check_url("https://plain.example/a.jpg", hosts) is None
    assert check_url("https://plain.example:444/a.jpg", hosts) == "port not allowed: plain.example:444"


class _Counting(ThreadingHTTPServer):
    daemon_threads = True
    hits = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Counting

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.server.hits += 1
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"abc")


@pytest.fixture
def other_service(no_proxy):
    server = _Counting(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_media_url_on_the_api_host_but_another_port_is_refused_unasked(other_service):
    """The sandbox's (or a proxy's) host is allowed with its port: another service on that machine is not."""
    port = other_service.server_address[1]
    settings = Settings(x_api_base_url=f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}")
    result = fetch(settings, f"http://127.0.0.1:{port}/media/a.jpg")
    assert result.data is None and result.error == f"port not allowed: 127.0.0.1:{port}"
    assert other_service.hits == 0  # refused before connecting
    allowed = Settings(x_api_base_url=f"http://127.0.0.1:{port}")
    assert fetch(allowed, f"http://127.0.0.1:{port}/media/a.jpg").data == b"abc"


def test_media_hosts_may_name_a_port():
    settings = Settings(media_hosts=["cdn.example:8443", "https://img.example:9443/"])
    hosts = make_downloader(settings).allowed_hosts
    assert {"cdn.example:8443", "img.example:9443"} <= hosts
    assert check_url("https://cdn.example:8443/a.jpg", hosts) is None
    assert check_url("https://img.example:9443/a.jpg", hosts) is None
    assert check_url("https://cdn.example/a.jpg", hosts) == "port not allowed: cdn.example:443"


# ------------------------------------------------------------------------------------------------ webhook (item 9)


@pytest.mark.parametrize("value", ["hooks.example/T0KEN-abc123/send", "ftp://hooks.example/x?sig=T0KEN-abc123"])
def test_a_malformed_webhook_url_is_redacted_in_the_config_error(monkeypatch, value):
    monkeypatch.setenv("NIJIFEED_FORWARD_WEBHOOK_URL", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "NIJIFEED_FORWARD_WEBHOOK_URL" in message and "expected an http(s) URL" in message
    assert "T0KEN" not in message and "hooks.example" not in message and "(got ***)" in message


def test_other_bad_settings_still_show_what_was_given(monkeypatch):
    monkeypatch.setenv("NIJIFEED_SOURCE", "ftp://nope")
    with pytest.raises(ConfigError, match="ftp://nope"):
        load_settings()
