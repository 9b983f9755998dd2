"""`nijifeed doctor`: all green on a good setup, and each failing check with its message and fix, against the X API
sandbox over HTTP."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from pipelinekit import db, use
from xsandbox import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_KEY, CONSUMER_SECRET, SECRETS

from service.sandbox import Sandbox

OAUTH1 = {"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET, "access_token": ACCESS_TOKEN,
          "access_token_secret": ACCESS_TOKEN_SECRET}


@pytest.fixture
def oauth1_env(service_env, monkeypatch):
    """The trained data dir with OAuth 1.0a credentials (tokens that do not expire) instead of the bearer token."""
    monkeypatch.delenv("NIJIFEED_X_BEARER_TOKEN", raising=False)
    for name, value in OAUTH1.items():
        monkeypatch.setenv(f"NIJIFEED_X_{name.upper()}", value)
    return service_env


def doctor(cli):
    result = cli("doctor", ok=False)
    lines = {line.split(":", 1)[0]: line for line in result.stdout.splitlines() if line[:2] in ("✓ ", "✗ ")}
    for secret in SECRETS:
        assert secret not in result.stdout
    return result, lines


def fix_after(stdout: str, name: str) -> str:
    lines = stdout.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"✗ {name}:"))
    assert lines[index + 1].startswith("    fix: ")
    return lines[index + 1]


def test_all_green_on_a_good_setup(oauth1_env, monkeypatch, cli, no_proxy):
    with Sandbox(oauth1_credentials=OAUTH1) as box:
        use(monkeypatch, box)
        monkeypatch.setenv("NIJIFEED_X_DAILY_READ_LIMIT", "2000")
        result, lines = doctor(cli)
        assert result.exit_code == 0, result.stdout
        assert all(line.startswith("✓") for line in lines.values()), result.stdout
        assert set(lines) >= {f"✓ {n}" for n in ("config", "credentials", "token expiry", "clock", "model", "data dir",
                                                  "web", "forwarders", "daily read limit")}
        assert "all checks passed" in result.stdout
        assert "OAuth 1.0a" in lines["✓ credentials"] and "@" in lines["✓ credentials"]
        assert "v1" in lines["✓ model"] and "matches" in lines["✓ model"]
        assert "2000 reads/day" in lines["✓ daily read limit"]
        assert len([r for r in box.requests if r.endpoint == "me"]) == 1  # one request
        assert not [r for r in box.requests if r.endpoint == "timeline"]


def test_bad_credentials_fail_with_the_apis_401(oauth1_env, monkeypatch, cli, no_proxy):
    wrong = dict(OAUTH1, access_token_secret="not-the-secret")
    with Sandbox(oauth1_credentials=wrong) as box:
        use(monkeypatch, box)
        result, lines = doctor(cli)
        assert result.exit_code == 1
        assert "401" in lines["✗ credentials"] and "GET /2/users/me" in lines["✗ credentials"]
        assert "nijifeed login" in fix_after(result.stdout, "credentials")
        assert lines["✓ clock"]  # the 401 answer's Date still tells the clock is right


def test_missing_credentials(service_env, monkeypatch, cli, no_proxy):
    monkeypatch.delenv("NIJIFEED_X_BEARER_TOKEN")
    with Sandbox() as box:
        use(monkeypatch, box)
        result, lines = doctor(cli)
        assert result.exit_code == 1
        assert "no X credentials" in lines["✗ credentials"]
        assert not box.requests


def test_a_bearer_token_that_is_not_refreshed_fails_the_token_check(service_env, sandbox, monkeypatch, cli):
    use(monkeypatch, sandbox)
    result, lines = doctor(cli)
    assert result.exit_code == 1
    assert lines["✓ credentials"]
    assert "expires after 2 hours" in lines["✗ token expiry"]
    assert "nijifeed login" in fix_after(result.stdout, "token expiry")


def test_clock_skew_against_the_apis_date_header(service_env, monkeypatch, cli, no_proxy):
    with Sandbox(clock=lambda: time.time() + 900) as box:  # the server's clock runs 15 minutes ahead of ours
        use(monkeypatch, box)
        result, lines = doctor(cli)
        assert result.exit_code == 1
        assert "behind the X API's" in lines["✗ clock"] and re.search(r" (899|900|901) s behind", lines["✗ clock"])
        assert "ntp" in fix_after(result.stdout, "clock").lower()


def test_unwritable_data_dir(oauth1_env, monkeypatch, cli, tmp_path, no_proxy):
    if os.geteuid() == 0:  # root writes through permissions: a folder that cannot be created instead
        target = Path("/proc/nijifeed-doctor-test/data")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "data"
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(target))
    with Sandbox(oauth1_credentials=OAUTH1) as box:
        use(monkeypatch, box)
        result, lines = doctor(cli)
    assert result.exit_code == 1
    assert "not writable" in lines["✗ data dir"]
    assert "NIJIFEED_DATA_DIR" in fix_after(result.stdout, "data dir")


def test_a_deleted_model_file(oauth1_env, monkeypatch, cli, no_proxy):
    # the copied data dir's model row names the session's shared file: point it at a private copy, then delete that
    conn = db(oauth1_env)
    shared = Path(conn.execute("SELECT path FROM models WHERE version = 1").fetchone()[0])
    private = oauth1_env / "models" / shared.name
    shutil.copyfile(shared, private)
    with conn:
        conn.execute("UPDATE models SET path = ? WHERE version = 1", (str(private),))
    conn.close()
    private.unlink()
    with Sandbox(oauth1_credentials=OAUTH1) as box:
        use(monkeypatch, box)
        result, lines = doctor(cli)
    assert result.exit_code == 1
    assert "v1 is missing" in lines["✗ model"]
    assert "nijifeed model use" in fix_after(result.stdout, "model")


def test_a_fresh_data_dir_will_get_the_starter_model(oauth1_env, monkeypatch, cli, tmp_path, no_proxy):
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(tmp_path / "fresh"))
    with Sandbox(oauth1_credentials=OAUTH1) as box:
        use(monkeypatch, box)
        result, lines = doctor(cli)
        assert "starter model will be trained" in lines["✓ model"], result.stdout
        monkeypatch.setenv("NIJIFEED_STARTER_MODEL", "false")
        result, lines = doctor(cli)
        assert "NIJIFEED_STARTER_MODEL=false" in lines["✗ model"]


def test_non_loopback_bind_without_a_token(oauth1_env, monkeypatch, cli, no_proxy):
    monkeypatch.setenv("NIJIFEED_WEB_HOST", "0.0.0.0")
    with Sandbox(oauth1_credentials=OAUTH1) as box:
        use(monkeypatch, box)
        result, lines = doctor(cli)
        assert result.exit_code == 1
        assert "0.0.0.0:8000" in lines["✗ web"] and "NIJIFEED_WEB_TOKEN" in fix_after(result.stdout, "web")
        monkeypatch.setenv("NIJIFEED_WEB_TOKEN", "a-long-random-web-token")
        result, lines = doctor(cli)
        assert "token" in lines["✓ web"].lower()


def test_forwarders_need_write_access_and_a_reachable_webhook(oauth1_env, monkeypatch, cli, no_proxy):
    monkeypatch.setenv("NIJIFEED_FORWARD_X_REPOST", "true")
    monkeypatch.setenv("NIJIFEED_FORWARD_WEBHOOK_URL", "http://127.0.0.1:9/hook")  # discard: nothing listens
    with Sandbox(oauth1_credentials=OAUTH1) as box:  # the sandbox's OAuth 1.0a tokens are read-only
        use(monkeypatch, box)
        result, lines = doctor(cli)
    assert result.exit_code == 1
    line = lines["✗ forwarders"]
    assert "write access" in line and "'read'" in line
    assert "127.0.0.1:9 cannot be reached" in line
    assert "Read and write" in fix_after(result.stdout, "forwarders")


def test_a_daily_limit_too_low_to_read_a_page(oauth1_env, monkeypatch, cli, no_proxy):
    monkeypatch.setenv("NIJIFEED_X_DAILY_READ_LIMIT", "10")
    with Sandbox(oauth1_credentials=OAUTH1) as box:
        use(monkeypatch, box)
        result, lines = doctor(cli)
    assert result.exit_code == 1
    assert "nothing would ever be read" in lines["✗ daily read limit"]


def test_a_bad_setting_is_the_first_failed_check(service_env, monkeypatch, cli):
    monkeypatch.setenv("NIJIFEED_X_MAX_RESULTS", "3")
    result, lines = doctor(cli)
    assert result.exit_code == 1
    assert "NIJIFEED_X_MAX_RESULTS" in lines["✗ config"]
    assert list(lines) == ["✗ config"]


def test_a_config_file_is_named(oauth1_env, monkeypatch, cli, tmp_path, no_proxy):
    config = tmp_path / "nijifeed.toml"
    config.write_text("poll_interval = 600\n")
    monkeypatch.setenv("NIJIFEED_CONFIG", str(config))
    with Sandbox(oauth1_credentials=OAUTH1) as box:
        use(monkeypatch, box)
        result, lines = doctor(cli)
    assert str(config) in lines["✓ config"]
    assert "600 s" in lines["✓ daily read limit"]
    assert result.exit_code == 0, result.stdout
