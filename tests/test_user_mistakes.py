"""Issue 10, item 6: the mistakes a new user makes end in one line that says what to fix, never a traceback:
missing X credentials for `run`/`poll`, a list setting written as a plain value, a TOML file that does not parse,
a misspelt ``NIJIFEED_*`` variable (a warning naming the nearest setting; the command goes on), a config file
that is not there, a data dir this user cannot write, and a web port already taken. Each through the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import load_settings, unknown_env_warnings


def lines_of(output: str) -> list[str]:
    return [line for line in output.strip().splitlines() if line.strip()]


def nijifeed(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed command in a process of its own (logging configured as for a user, no test harness)."""
    return subprocess.run([sys.executable, "-m", "service", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"}, cwd=Path(__file__).resolve().parent.parent)


# ------------------------------------------------------------------------------------------------ credentials


def test_poll_without_credentials_is_one_line(cli):
    result = cli("poll", ok=False)
    lines = lines_of(result.output)
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: no X credentials"), result.output
    assert "NIJIFEED_X_" in lines[0]


def test_run_without_credentials_is_one_error_line_and_trains_nothing(tmp_path):
    done = nijifeed("run")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output and "starter" not in output, output
    errors = [line for line in lines_of(output) if line.startswith("error:")]
    assert len(errors) == 1 and "NIJIFEED_X_" in errors[0], output
    assert lines_of(output)[-1] == errors[0]
    assert len(lines_of(output)) <= 2, output  # at most the extractor's one log line before it


# ------------------------------------------------------------------------------------------------ list settings


@pytest.mark.parametrize("value, expected", [
    ("media.example.org", ["media.example.org"]),
    ("media.example.org, cdn.example.org", ["media.example.org", "cdn.example.org"]),
    ("media.example.org,cdn.example.org,", ["media.example.org", "cdn.example.org"]),
    ('["media.example.org","cdn.example.org"]', ["media.example.org", "cdn.example.org"]),
    ("", []),
])
def test_a_list_setting_may_be_comma_separated(value, expected, cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_MEDIA_HOSTS", value)
    assert load_settings().media_hosts == expected
    result = cli("status")
    assert "error" not in result.output and "warning" not in result.output


def test_a_comma_separated_list_is_still_validated(cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_WEB_ALLOWED_HOSTS", "feed.example.org, https://proxy.example.org/")
    result = cli("status", ok=False)
    lines = lines_of(result.output)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: NIJIFEED_WEB_ALLOWED_HOSTS:") and "https://proxy.example.org/" in lines[0]


def test_a_broken_json_list_names_the_setting(cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_MEDIA_HOSTS", '["media.example.org"')
    result = cli("status", ok=False)
    lines = lines_of(result.output)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: NIJIFEED_MEDIA_HOSTS:") and "a,b" in lines[0]


# ------------------------------------------------------------------------------------------------ the TOML file


def test_a_toml_syntax_error_names_the_file_and_the_line(cli, monkeypatch, tmp_path):
    config = tmp_path / "nijifeed.toml"
    config.write_text("poll_interval = 600\nweb_port = \nx_max_results = 20\n")
    monkeypatch.setenv("NIJIFEED_CONFIG", str(config))
    result = cli("status", ok=False)
    lines = lines_of(result.output)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: NIJIFEED_CONFIG:"), lines[0]
    assert str(config) in lines[0] and "line 2" in lines[0] and "Invalid value" in lines[0], lines[0]


def test_a_misspelt_key_in_the_toml_file_names_the_setting_meant(cli, monkeypatch, tmp_path):
    config = tmp_path / "nijifeed.toml"
    config.write_text("poll_intervall = 600\n")
    monkeypatch.setenv("NIJIFEED_CONFIG", str(config))
    result = cli("status", ok=False)
    lines = lines_of(result.output)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "NIJIFEED_POLL_INTERVALL: not a setting (did you mean NIJIFEED_POLL_INTERVAL?)" in lines[0], lines[0]


def test_a_missing_config_file_is_one_line(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("NIJIFEED_CONFIG", str(tmp_path / "nope.toml"))
    result = cli("status", ok=False)
    lines = lines_of(result.output)
    assert result.exit_code == 2 and lines == [f"error: NIJIFEED_CONFIG: no such file: {tmp_path / 'nope.toml'}"]


# ------------------------------------------------------------------------------------------------ misspelt variables


def test_a_misspelt_variable_warns_with_the_nearest_name_and_goes_on(cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_POLL_INTERVALL", "60")
    result = cli("status")  # exit 0: a warning, not a failure
    warnings = [line for line in lines_of(result.output) if line.startswith("warning:")]
    assert warnings == ["warning: NIJIFEED_POLL_INTERVALL is not a nijifeed setting and is ignored (did you mean "
                        "NIJIFEED_POLL_INTERVAL?)"], result.output


def test_unknown_variable_warnings():
    assert unknown_env_warnings({"NIJIFEED_WEB_TOKN": "x", "NIJIFEED_DATA_DIR": "/d", "NIJIFEED_CONFIG": "c.toml",
                                 "NIJIFEED_MODELS_DIR": "./models", "HOME": "/root", "NIJIFEED_QQQ": "1"}) == [
        "NIJIFEED_QQQ is not a nijifeed setting and is ignored (config/nijifeed.env.example lists every setting)",
        "NIJIFEED_WEB_TOKN is not a nijifeed setting and is ignored (did you mean NIJIFEED_WEB_TOKEN?)",
    ]
    assert unknown_env_warnings({"nijifeed_poll_interval": "60"}) == []  # read in any case, so not unknown


# ------------------------------------------------------------------------------------------------ data dir, port


def _unwritable_dir(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only one, or for root (who ignores modes) a sysfs
    folder where nothing can be created."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    candidates = [folder, Path("/sys/kernel")]
    for candidate in candidates:
        try:
            (candidate / ".nijifeed-probe").touch()
        except OSError:
            return candidate
        (candidate / ".nijifeed-probe").unlink()
    pytest.skip("no folder this user cannot write to (root without /sys)")


@pytest.mark.parametrize("command", ["status", "poll", "run", "review list"])
def test_a_data_dir_that_cannot_be_written_is_one_line(command, cli, monkeypatch, tmp_path):
    folder = _unwritable_dir(tmp_path)
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(folder))
    monkeypatch.setenv("NIJIFEED_X_BEARER_TOKEN", "a-token")
    try:
        result = cli(*command.split(), ok=False)
    finally:
        (tmp_path / "read-only").chmod(0o755)
    lines = lines_of(result.output)
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith(f"error: NIJIFEED_DATA_DIR: cannot write in {folder}: "), lines
    assert "make it writable" in lines[0]


def test_run_on_a_port_in_use_is_one_error_line(tmp_path, monkeypatch):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    (tmp_path / "inbox").mkdir()
    monkeypatch.setenv("NIJIFEED_SOURCE", f"folder:{tmp_path / 'inbox'}")
    monkeypatch.setenv("NIJIFEED_WEB_PORT", str(port))
    monkeypatch.setenv("NIJIFEED_STARTER_MODEL", "false")
    try:
        done = nijifeed("run")
    finally:
        holder.close()
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output
    errors = [line for line in lines_of(output) if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "in use" in errors[0], output
