"""`nijifeed login` (OAuth 2.0 with PKCE, OAuth 1.0a PIN) and tokens that last, over HTTP against the sandbox: the
token file (mode 0600, atomic), refresh before expiry and after a 401 with rotation, a headless seed, a daemon that
polls through token expiry, and a crash around the save of a rotated refresh token."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pipelinekit import use
from xsandbox import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_KEY, CONSUMER_SECRET, all_log_text

from service.config import load_settings
from service.sources import SourceError
from service.sources.x_client import XClient
from service.sources.x_tokens import TokenFile

CLIENT_ID = "nijifeed-test-client-id"
OAUTH1 = {"oauth1_credentials": {"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET,
                                 "access_token": ACCESS_TOKEN, "access_token_secret": ACCESS_TOKEN_SECRET}}


class LazyInput(io.RawIOBase):
    """Standard input whose next line is computed when the program reads it (after it printed the URL)."""

    def __init__(self, *lines: Callable[[], str]) -> None:
        self.lines = list(lines)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not len(buffer):
            return 0
        if not self.pending and self.lines:
            self.pending = (self.lines.pop(0)() + "\n").encode()
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def visit(url: str) -> httpx.Response:
    """What a browser on another machine does with the printed URL (no redirect followed: the callback host
    need not exist)."""
    return httpx.get(url, follow_redirects=False, trust_env=False, timeout=5)


def printed_url(output: str, needle: str) -> str:
    found = re.search(r"(http\S*" + re.escape(needle) + r"\S*)", output.replace("\n", ""))
    assert found, output
    return found.group(1)


class Browser:
    """Opens the authorize URL the command prints and answers with where X sends the browser."""

    def __init__(self, capsys_or_holder: dict) -> None:
        self.holder = capsys_or_holder

    def redirected(self) -> str:
        response = visit(self.holder["url"])
        assert response.status_code == 302, response.text
        return response.headers["location"]


@pytest.fixture
def record_urls(monkeypatch):
    """The authorize URL each login printed (the CLI's output is only readable once it ended)."""
    from service.sources import x_login

    urls: dict[str, str] = {}
    for cls in (x_login.OAuth2Login, x_login.OAuth1Login):
        original = cls.start.__func__

        def start(klass, *args, _original=original, **kwargs):
            login = _original(klass, *args, **kwargs)
            urls["url"] = login.url
            return login

        monkeypatch.setattr(cls, "start", classmethod(start))
    return urls


def invoke(args: list[str], stdin: io.RawIOBase):
    """The CLI in-process like the ``cli`` fixture, its standard input read lazily (click's runner takes a stream;
    typer's only text)."""
    import click.testing
    import typer.main

    from service.cli import app

    return click.testing.CliRunner().invoke(typer.main.get_command(app), args, input=stdin, catch_exceptions=False)


def token_file() -> TokenFile:
    return TokenFile(load_settings().x_tokens_path)


def test_oauth2_login_with_pkce_saves_tokens_that_work(sandbox, monkeypatch, record_urls):
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_X_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("NIJIFEED_FORWARD_X_BOOKMARK", "true")
    result = invoke(["login"], LazyInput(Browser(record_urls).redirected))
    assert result.exit_code == 0, result.output
    url = record_urls["url"]
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(sandbox.url + "/i/oauth2/authorize?")
    assert query["scope"] == ["tweet.read users.read offline.access bookmark.write"]
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT_ID]
    assert f"logged in as @{sandbox.me['username']}" in result.output
    path = load_settings().x_tokens_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["kind"] == "oauth2" and stored["refresh_token"] in sandbox.oauth.refresh_tokens()
    assert stored["access_token"] not in result.output and stored["refresh_token"] not in result.output
    assert sandbox.oauth.grants == ["authorization_code"]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_production_authorize_page_is_x_com(monkeypatch):
    from service.sources.x_login import OAuth2Login

    login = OAuth2Login.start(load_settings(), client_id=CLIENT_ID)
    assert login.url.startswith("https://x.com/i/oauth2/authorize?")
    assert parse_qs(urlsplit(login.url).query)["scope"] == ["tweet.read users.read offline.access"]


def test_oauth2_login_refuses_a_url_of_another_attempt(sandbox, monkeypatch, record_urls):
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_X_CLIENT_ID", CLIENT_ID)

    def forged() -> str:
        return re.sub(r"state=[^&]+", "state=someone-else", Browser(record_urls).redirected())

    result = invoke(["login"], LazyInput(forged))
    assert result.exit_code == 1 and "another login attempt" in result.output
    assert not load_settings().x_tokens_path.exists()


def test_sandbox_token_endpoint_checks_the_pkce_verifier(sandbox):
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": "http://127.0.0.1/cb",
              "scope": "tweet.read users.read offline.access", "state": "s", "code_challenge": challenge,
              "code_challenge_method": "S256"}
    location = httpx.get(sandbox.url + "/i/oauth2/authorize", params=params, trust_env=False).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1/cb",
            "client_id": CLIENT_ID, "code_verifier": "w" * 64}
    token_url = sandbox.url + "/2/oauth2/token"
    assert httpx.post(token_url, data=form, trust_env=False).status_code == 400  # wrong verifier (code now spent)
    location = httpx.get(sandbox.url + "/i/oauth2/authorize", params=params, trust_env=False).headers["location"]
    form.update(code=parse_qs(urlsplit(location).query)["code"][0], code_verifier=verifier)
    answer = httpx.post(token_url, data=form, trust_env=False)
    assert answer.status_code == 200, answer.text
    first = answer.json()
    assert httpx.post(token_url, data=form, trust_env=False).status_code == 400  # a code works once
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": CLIENT_ID}
    second = httpx.post(token_url, data=refresh, trust_env=False)
    assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]
    assert httpx.post(token_url, data=refresh, trust_env=False).status_code == 400  # rotated: the old one is spent


@pytest.mark.parametrize("sandbox", [OAUTH1], indirect=True)
def test_oauth1_pin_login(sandbox, monkeypatch, record_urls):
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_X_CONSUMER_KEY", CONSUMER_KEY)
    monkeypatch.setenv("NIJIFEED_X_CONSUMER_SECRET", CONSUMER_SECRET)

    def pin() -> str:
        page = visit(record_urls["url"])
        assert page.status_code == 200
        return re.search(r"<code>(\d+)</code>", page.text).group(1)

    result = invoke(["login", "--oauth1"], LazyInput(pin))
    assert result.exit_code == 0, result.output
    assert record_urls["url"].startswith(sandbox.url + "/oauth/authorize?oauth_token=")
    assert "logged in as @" in result.output and "(oauth1)" in result.output
    stored = token_file().load()
    assert stored["kind"] == "oauth1" and stored["access_token"] in sandbox.oauth.oauth1_tokens
    # the daemon's client signs with the stored token (the sandbox checks the signature)
    monkeypatch.delenv("NIJIFEED_X_CONSUMER_KEY")
    monkeypatch.delenv("NIJIFEED_X_CONSUMER_SECRET")
    assert XClient.from_settings(load_settings()).user_id() == sandbox.me["id"]


@pytest.mark.parametrize("sandbox", [OAUTH1], indirect=True)
def test_oauth1_login_with_a_wrong_pin_fails_in_one_line(sandbox, monkeypatch, record_urls):
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_X_CONSUMER_KEY", CONSUMER_KEY)
    monkeypatch.setenv("NIJIFEED_X_CONSUMER_SECRET", CONSUMER_SECRET)
    result = invoke(["login", "--oauth1"], LazyInput(lambda: "0000000" if visit(record_urls["url"]) else ""))
    assert result.exit_code == 1 and "X refused the PIN" in result.output
    assert "Traceback" not in result.output and not load_settings().x_tokens_path.exists()


# --- refresh ---------------------------------------------------------------------------------------------------


def seed(monkeypatch, sandbox) -> str:
    token = sandbox.oauth.issue_refresh_token(CLIENT_ID)
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_X_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("NIJIFEED_X_REFRESH_TOKEN", token)
    monkeypatch.delenv("NIJIFEED_X_BEARER_TOKEN", raising=False)
    return token


@pytest.mark.parametrize("sandbox", [{"oauth2_token_ttl": 1.0}], indirect=True)
def test_refresh_before_expiry_and_after_a_401_rotating_and_saving(sandbox, monkeypatch, caplog):
    first = seed(monkeypatch, sandbox)
    caplog.set_level(logging.DEBUG)
    client = XClient.from_settings(load_settings())
    assert client.refreshable and client.user_id() == sandbox.me["id"]
    stored = token_file().load()
    assert stored["seed_sha256"] and stored["refresh_token"] != first  # rotated and saved
    assert first in sandbox.oauth.used_refresh
    time.sleep(1.1)  # expired: refreshed before the call, no 401
    client._user_id = None
    client.user_id()
    assert [r.status for r in sandbox.requests if r.endpoint == "me"] == [200, 200]
    sandbox.oauth.expire_access_tokens()  # revoked early: the 401 makes it refresh and send again
    client._user_id = None
    client.user_id()
    assert [r.status for r in sandbox.requests if r.endpoint == "me"] == [200, 200, 401, 200]
    assert sandbox.oauth.grants == ["refresh_token"] * 3
    assert token_file().load()["refresh_token"] in sandbox.oauth.refresh_tokens()
    text = all_log_text(caplog.records)
    for secret in (first, *sandbox.oauth.refresh_tokens(), *sandbox.oauth.used_refresh):
        assert secret not in text
    # the seed was used once: a new process reads the stored, rotated token, not the spent seed
    again = XClient.from_settings(load_settings())
    assert again.user_id() == sandbox.me["id"]


def test_two_clients_share_one_rotation(sandbox, monkeypatch):
    """The daemon's client and a command's (or the forwarder's) never spend the same refresh token twice."""
    seed(monkeypatch, sandbox)
    a = XClient.from_settings(load_settings())
    a.user_id()
    b = XClient.from_settings(load_settings())
    sandbox.oauth.expire_access_tokens()
    a._user_id = b._user_id = None
    a.user_id()  # 401, refresh: rotates
    b.user_id()  # 401: finds the file rotated by a, adopts it, no refresh with the spent token
    assert sandbox.oauth.grants == ["refresh_token", "refresh_token"]


def test_a_spent_refresh_token_says_login_again(sandbox, monkeypatch):
    token = seed(monkeypatch, sandbox)
    httpx.post(sandbox.url + "/2/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                      "client_id": CLIENT_ID}, trust_env=False)
    with pytest.raises(SourceError, match="nijifeed login") as info:
        XClient.from_settings(load_settings()).user_id()
    assert info.value.fatal and token not in str(info.value)


def test_a_failed_save_keeps_the_new_tokens_unused_and_saves_them_next(sandbox, monkeypatch):
    seed(monkeypatch, sandbox)
    client = XClient.from_settings(load_settings())
    real_save = TokenFile.save
    monkeypatch.setattr(TokenFile, "save", lambda self, data: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(SourceError, match="cannot save the refreshed X tokens"):
        client.user_id()
    assert not [r for r in sandbox.requests if r.endpoint == "me"]  # the new access token was not used
    monkeypatch.setattr(TokenFile, "save", real_save)
    assert client.user_id() == sandbox.me["id"]
    assert token_file().load()["refresh_token"] in sandbox.oauth.refresh_tokens()
    assert sandbox.oauth.grants == ["refresh_token"]  # saved, not refreshed again


@pytest.mark.parametrize("sandbox", [{"oauth2_token_ttl": 1.5}], indirect=True)
def test_daemon_polls_through_token_expiry_without_a_pause(service_env, sandbox, monkeypatch, caplog):
    """A daemon started with only a client id and a refresh token, its access tokens expiring every 1.5 s."""
    from service.pipeline.service import Service
    from service.store import Store

    seed(monkeypatch, sandbox)
    caplog.set_level(logging.INFO)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(poll_interval=1, poll_jitter=0, web_port=port)
    cycles: list[float] = []

    def after_cycle() -> None:
        cycles.append(time.monotonic())
        if len(cycles) < 7:
            sandbox.publish(2)
        if len(cycles) == 3:
            sandbox.oauth.expire_access_tokens()  # and once revoked early, to take the 401 path

    service = Service.from_settings(settings, max_cycles=7, after_cycle=after_cycle)
    with service:
        service.run()
    api = [r for r in sandbox.requests if r.endpoint in ("me", "timeline")]
    assert len(cycles) == 7
    assert max(b - a for a, b in zip(cycles, cycles[1:], strict=False)) < 5  # no pause
    assert sandbox.oauth.grants.count("refresh_token") >= 3
    assert [r.status for r in api].count(401) <= 1 and all(r.status in (200, 401) for r in api)
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING and "service.sources" in r.name]
    assert not problems, all_log_text(problems)
    with Store.open(settings.db_path) as store:
        assert store.last_poll() is not None
    with closing(sqlite3.connect(settings.db_path)) as conn:
        stored_ids = {str(row[0]) for row in conn.execute("SELECT id FROM posts")}
    assert {p["id"] for p in sandbox.posts()[:12]} <= stored_ids  # every post published while it ran


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", [{"oauth2_token_ttl": 3.0}], indirect=True)
def test_daemon_polls_for_minutes_while_its_access_tokens_expire_every_few_seconds(service_env, sandbox, monkeypatch,
                                                                                   caplog):
    """Issue 10: minutes of polling on a client id and a refresh token alone, each access token living 3 s."""
    from service.pipeline.service import Service

    seed(monkeypatch, sandbox)
    caplog.set_level(logging.INFO)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(poll_interval=2, poll_jitter=0, web_port=port)
    cycles: list[float] = []

    def after_cycle() -> None:
        cycles.append(time.monotonic())
        sandbox.publish(1)

    with Service.from_settings(settings, max_cycles=60, after_cycle=after_cycle) as service:
        service.run()
    assert len(cycles) == 60 and cycles[-1] - cycles[0] > 100  # about two minutes, ~40 token lifetimes
    assert max(b - a for a, b in zip(cycles, cycles[1:], strict=False)) < 8  # never paused
    assert sandbox.oauth.grants.count("refresh_token") >= 25
    api = [r for r in sandbox.requests if r.endpoint in ("me", "timeline")]
    assert all(r.status in (200, 401) for r in api) and [r.status for r in api].count(401) <= 2
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING and "service.sources" in r.name]
    assert not problems, all_log_text(problems)


# --- a crash around the save of a rotated refresh token ----------------------------------------------------------

CRASHER = textwrap.dedent("""
    import os, signal, sys
    from service.sources.x_tokens import TokenFile
    real_save = TokenFile.save
    def save(self, data):
        if sys.argv[1] == "before-save":
            os.kill(os.getpid(), signal.SIGKILL)  # the token endpoint answered; nothing written yet
        real_save(self, data)
        os.kill(os.getpid(), signal.SIGKILL)  # written, not used yet
    TokenFile.save = save
    from service.cli import app
    app(["poll"])
""")


def run_crasher(tmp_path: Path, when: str) -> int:
    script = tmp_path / "crash.py"
    script.write_text(CRASHER)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, str(script), when], env=env, cwd=root, timeout=120,
                          capture_output=True).returncode


@pytest.mark.parametrize("sandbox", [{"oauth2_token_ttl": 3600.0}], indirect=True)
def test_sigkill_right_after_saving_a_rotated_token_then_a_restart_polls(service_env, sandbox, monkeypatch, tmp_path,
                                                                        cli):
    seed(monkeypatch, sandbox)
    assert run_crasher(tmp_path, "after-save") == -signal.SIGKILL
    assert sandbox.oauth.grants == ["refresh_token"]
    stored = token_file().load()
    assert stored["refresh_token"] in sandbox.oauth.refresh_tokens()  # the rotated one, on disk
    assert not [r for r in sandbox.requests if r.endpoint in ("me", "timeline")]  # killed before any use
    result = cli("poll")  # the restart: uses the saved access token, polls
    assert sandbox.oauth.grants == ["refresh_token"]
    assert [r.status for r in sandbox.requests if r.endpoint == "timeline"] and "Traceback" not in result.output


def test_sigkill_before_the_save_loses_the_rotated_token_and_says_so(service_env, sandbox, monkeypatch, tmp_path,
                                                                   cli):
    """The one window no client can close (see service/sources/x_tokens.py): the restart fails in one line that
    names the fix, and nothing on disk is half-written."""
    seed(monkeypatch, sandbox)
    assert run_crasher(tmp_path, "before-save") == -signal.SIGKILL
    assert sandbox.oauth.grants == ["refresh_token"]
    assert not token_file().path.exists()
    result = cli("poll", ok=False)
    assert result.exit_code != 0 and "nijifeed login" in result.output and "Traceback" not in result.output
