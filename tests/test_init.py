"""`nijifeed init`: the guided setup in a pseudo-terminal (pexpect) against the sandbox, re-run, and --no-input."""

from __future__ import annotations

import os
import re
import stat
import sys
import tomllib

import httpx
import pexpect
import pytest
from pipelinekit import use

from service.config import load_settings

CLIENT_ID = "nijifeed-init-client"


def spawn(*args: str) -> pexpect.spawn:
    env = dict(os.environ, TERM="xterm-256color", NO_COLOR="1", COLUMNS="400", LINES="50")
    return pexpect.spawn(sys.executable, ["-m", "service", "init", *args], env=env, dimensions=(50, 400),
                         encoding="utf-8", timeout=60)


def config_path():
    return load_settings().data_dir / "config.toml"


def test_init_in_a_terminal_logs_in_checks_prices_and_writes_the_config(sandbox, monkeypatch):
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_X_CLIENT_ID", CLIENT_ID)
    child = spawn()
    try:
        child.expect_exact("1. Your X account")
        child.expect_exact("Log in with 1) OAuth 2.0 or 2) OAuth 1.0a PIN")
        child.sendline("1")
        child.expect_exact("Client secret")
        child.sendline("")
        child.expect(r"(http://127\.0\.0\.1:\d+/i/oauth2/authorize\?\S+)")
        url = child.match.group(1)
        location = httpx.get(url, follow_redirects=False, trust_env=False, timeout=5).headers["location"]
        child.expect_exact("Redirected URL")
        child.sendline(location)
        child.expect_exact(f"logged in as @{sandbox.me['username']}")
        child.expect_exact(f"GET /2/users/me: @{sandbox.me['username']}")
        child.expect_exact("Seconds between polls")
        child.sendline("600")
        child.expect_exact("Posts per page")
        child.sendline("")  # the default, 100
        child.expect_exact("Pages per poll")
        child.sendline("2")
        child.expect_exact("144 polls a day")
        child.expect(r"every poll a full page: +14,400 reads/day = \$72\.00/day")
        child.expect(r"every poll every page: +28,800 reads/day = \$144\.00/day")
        child.expect_exact("Posts read per day, at most")
        child.sendline("500")
        child.expect_exact("500 reads/day is at most $2.50/day")
        child.expect_exact("(mode 0600)")
        child.expect(r"NIJIFEED_CONFIG=(\S+) nijifeed run")
        assert child.match.group(1) == str(config_path())
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    path = config_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = tomllib.loads(path.read_text())
    assert values["poll_interval"] == 600 and values["x_max_results"] == 100 and values["x_max_pages"] == 2
    assert values["x_daily_read_limit"] == 500 and values["x_client_id"] == CLIENT_ID
    assert values["x_api_base_url"] == sandbox.url
    assert not any("token" in key or "secret" in key for key in values)  # tokens stay in x_tokens.json
    monkeypatch.setenv("NIJIFEED_CONFIG", str(path))
    monkeypatch.delenv("NIJIFEED_X_API_BASE_URL")
    settings = load_settings()
    assert settings.poll_interval == 600 and settings.x_daily_read_limit == 500

    # re-run: the file's values are the defaults, the stored tokens are kept, a key added by hand stays
    path.write_text(path.read_text() + 'log_level = "WARNING"\n')
    child = spawn()
    try:
        child.expect_exact("Credentials found. Log in again?")
        child.sendline("n")
        child.expect_exact("GET /2/users/me: @")
        child.expect_exact("Seconds between polls [600]")
        child.sendline("")
        child.expect_exact("Posts per page (5-100) [100]")
        child.sendline("")
        child.expect_exact("Pages per poll, at most (1-50) [2]")
        child.sendline("3")
        child.expect_exact("Posts read per day, at most [500]")
        child.sendline("")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    values = tomllib.loads(path.read_text())
    assert values["x_max_pages"] == 3 and values["poll_interval"] == 600 and values["log_level"] == "WARNING"
    assert sandbox.oauth.grants == ["authorization_code"]  # no second login


def test_init_no_input_takes_flags_and_environment(sandbox, monkeypatch, cli, tmp_path):
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_X_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("NIJIFEED_X_REFRESH_TOKEN", sandbox.oauth.issue_refresh_token(CLIENT_ID))
    monkeypatch.setenv("NIJIFEED_X_MAX_RESULTS", "50")
    target = tmp_path / "etc" / "nijifeed.toml"
    result = cli("init", "--no-input", "--config", target, "--poll-interval", "900", "--daily-limit", "300")
    assert f"NIJIFEED_CONFIG={target} nijifeed run" in result.output
    assert "96 polls a day" in result.output and "@" + sandbox.me["username"] in result.output
    values = tomllib.loads(target.read_text())
    assert values["poll_interval"] == 900 and values["x_daily_read_limit"] == 300 and values["x_max_results"] == 50
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_init_no_input_without_credentials_says_what_to_do(cli):
    result = cli("init", "--no-input", ok=False)
    assert result.exit_code == 1 and "nijifeed login" in result.output and "Traceback" not in result.output
    assert not config_path().exists()


@pytest.mark.parametrize("interval, expected", [(300, "288 polls a day"), (60, "1,440 polls a day")])
def test_cost_lines(interval, expected):
    from service.cli.init import cost_lines

    text = "\n".join(cost_lines(interval, 100, 8, 0.005, 100))
    assert expected in text and re.search(r"\$\d", text)
