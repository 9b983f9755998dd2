from pathlib import Path

import pytest

from service.config import ConfigError, Settings, load_settings


def test_defaults_follow_the_published_rule(tmp_path):
    settings = load_settings()
    assert settings.score_kind == "margin"
    assert settings.extractor == "auto"
    assert settings.db_path == settings.data_dir / "nijifeed.sqlite3"


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("NIJIFEED_BATCH_SIZE", "4")
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(tmp_path / "d"))
    settings = load_settings()
    assert settings.batch_size == 4
    assert settings.data_dir == tmp_path / "d"


def test_toml_file_is_read_and_environment_wins(monkeypatch, tmp_path):
    config = tmp_path / "nijifeed.toml"
    config.write_text('batch_size = 8\ntarget_precision = 0.95\n')
    monkeypatch.setenv("NIJIFEED_CONFIG", str(config))
    monkeypatch.setenv("NIJIFEED_BATCH_SIZE", "2")
    settings = load_settings()
    assert settings.batch_size == 2
    assert settings.target_precision == 0.95


def test_bad_value_names_the_setting(monkeypatch):
    monkeypatch.setenv("NIJIFEED_THRESHOLD", "1.7")
    with pytest.raises(ConfigError, match="NIJIFEED_THRESHOLD"):
        load_settings()


def test_unknown_key_in_config_file_is_an_error(monkeypatch, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("bach_size = 8\n")
    monkeypatch.setenv("NIJIFEED_CONFIG", str(config))
    with pytest.raises(ConfigError, match="NIJIFEED_BACH_SIZE"):
        load_settings()


def test_missing_config_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("NIJIFEED_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="nope.toml"):
        load_settings()


def test_example_config_is_valid(monkeypatch):
    example = Path(__file__).resolve().parent.parent / "config" / "nijifeed.example.toml"
    monkeypatch.setenv("NIJIFEED_CONFIG", str(example))
    assert isinstance(load_settings(), Settings)


def test_bad_setting_stops_the_cli_with_its_name(cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_SCORE_KIND", "vibes")
    result = cli("model", "list", ok=False)
    assert result.exit_code == 2
    assert "NIJIFEED_SCORE_KIND" in result.output
