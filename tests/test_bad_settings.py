"""Issue 9: every bad setting ends in one line naming it, and exit status 2, never a traceback. Before, a data dir
that was a file, a TOML file that did not parse (or was not UTF-8), a list setting that was not JSON (since issue
10 read as comma-separated), a path under ``~someone`` with no such home, and an API URL that did not parse each
ended in a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest


def _file(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


CASES: dict[str, tuple] = {
    # name: (variable, value or a function of tmp_path making it[, the setting the message names])
    "port not a number": ("NIJIFEED_WEB_PORT", "abc"),
    "port out of range": ("NIJIFEED_WEB_PORT", "70000"),
    "data dir is a file": ("NIJIFEED_DATA_DIR", lambda tmp: _file(tmp, "a-file", b"x")),
    "data dir under a file": ("NIJIFEED_DATA_DIR", lambda tmp: _file(tmp, "b-file", b"x") + "/data"),
    "config not TOML": ("NIJIFEED_CONFIG", lambda tmp: _file(tmp, "bad.toml", b"data_dir = [\n")),
    "config not UTF-8": ("NIJIFEED_CONFIG", lambda tmp: _file(tmp, "bin.toml", b"\xff\xfe\x00web_port = 1")),
    "config with a table for a setting": ("NIJIFEED_CONFIG", lambda tmp: _file(tmp, "t.toml", b"[web_port]\na = 1\n"),
                                          "NIJIFEED_WEB_PORT"),
    "config with an unknown key": ("NIJIFEED_CONFIG", lambda tmp: _file(tmp, "u.toml", b"[[nope]]\na = 1\n"), "NIJIFEED_NOPE"),
    "config missing": ("NIJIFEED_CONFIG", lambda tmp: str(tmp / "missing.toml")),
    "config a folder": ("NIJIFEED_CONFIG", lambda tmp: str(tmp)),
    # (a comma-separated list is accepted since issue 10: tests/test_user_mistakes.py)
    "list with a bad entry": ("NIJIFEED_WEB_ALLOWED_HOSTS", "a.example,https://b.example/"),
    "list JSON cut short": ("NIJIFEED_MEDIA_HOSTS", '["a.example"'),
    "list of the wrong type": ("NIJIFEED_MEDIA_HOSTS", "{}"),
    "allowed host with a scheme": ("NIJIFEED_WEB_ALLOWED_HOSTS", '["https://x.example/"]'),
    "home of no such user": ("NIJIFEED_I2V_MODEL", "~no-such-user-nijifeed/i2v.onnx"),
    "preset under no such home": ("NIJIFEED_ONNX_PRESET", "~no-such-user-nijifeed/p.toml"),
    "API URL with a broken IPv6 host": ("NIJIFEED_X_API_BASE_URL", "http://[::1"),
    "API URL with a bad port": ("NIJIFEED_X_API_BASE_URL", "http://localhost:port"),
    "API URL without a host": ("NIJIFEED_X_API_BASE_URL", "https://"),
    "API URL not http": ("NIJIFEED_X_API_BASE_URL", "ftp://example.org"),
    "webhook not http": ("NIJIFEED_FORWARD_WEBHOOK_URL", "nope"),
    "threshold NaN": ("NIJIFEED_THRESHOLD", "nan"),
    "unknown choice": ("NIJIFEED_EXTRACTOR", "magic"),
    "not a boolean": ("NIJIFEED_FORWARD_X_REPOST", "maybe"),
    "source not x or folder": ("NIJIFEED_SOURCE", "folder:"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_setting_is_one_line_and_exit_2(name, tmp_path, cli, monkeypatch):
    variable, value, *named = CASES[name]
    monkeypatch.setenv(variable, value(tmp_path) if callable(value) else str(value))
    result = cli("status", ok=False)  # in-process: a traceback would raise here
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: NIJIFEED_"), result.output
    assert (named or [variable])[0] in lines[0], lines[0]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a path no one can create a folder under")
def test_a_data_dir_that_cannot_be_made_is_one_line(cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_DATA_DIR", "/proc/nijifeed-cannot-be-here/data")
    result = cli("status", ok=False)
    assert result.exit_code == 2 and result.output.strip().startswith("error: NIJIFEED_DATA_DIR: cannot create")
    assert len(result.output.strip().splitlines()) == 1


def test_an_unreadable_config_is_one_line(tmp_path, cli, monkeypatch):
    # A file whose read fails even for root (a mode-0 file does not, and CI runs as root): reading the process's
    # own memory from offset 0 is an I/O error.
    monkeypatch.setenv("NIJIFEED_CONFIG", "/proc/self/mem")
    result = cli("status", ok=False)
    assert result.exit_code == 2 and "cannot read" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_several_bad_settings_are_one_line_each(cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_WEB_PORT", "abc")
    monkeypatch.setenv("NIJIFEED_BATCH_SIZE", "0")
    result = cli("status", ok=False)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: invalid settings:",
        "  NIJIFEED_BATCH_SIZE: Input should be greater than or equal to 1 (got '0')",
        "  NIJIFEED_WEB_PORT: Input should be a valid integer, unable to parse string as an integer (got 'abc')",
    ]
