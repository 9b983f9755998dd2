"""One settings object for the whole service.

Values come, highest first, from: keyword arguments, ``NIJIFEED_*`` environment variables, the TOML file named
by ``NIJIFEED_CONFIG``, then the defaults below. Parts receive a ``Settings`` instance; nothing deep inside reads
the environment itself, so tests can build any configuration they need.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from service.errors import NijifeedError
from service.words import ScoreKind

ExtractorName = Literal["auto", "builtin", "i2v", "onnx"]


class ConfigError(NijifeedError):
    """A setting has a bad value; the message names the setting and what is wrong."""

    exit_code = 2  # as for a bad command-line option: nothing ran


class _EnvSource(EnvSettingsSource):
    """The environment, where a list setting may also be written as comma-separated values
    (``NIJIFEED_MEDIA_HOSTS=a.example, b.example``); a value that starts with ``[`` (or ``{``) is JSON, as
    pydantic-settings reads it."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        if isinstance(value, str) and get_origin(field.annotation) is list and not value.lstrip().startswith(("[", "{")):
            return [part.strip() for part in value.split(",") if part.strip()]
        return super().decode_complex_value(field_name, field, value)


def _default_data_dir() -> Path:
    return Path(user_data_dir("nijifeed", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NIJIFEED_", extra="forbid", validate_default=True)

    data_dir: Path = Field(default_factory=_default_data_dir, description="Where the store, models and cache live.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Features
    extractor: ExtractorName = Field("auto", description="auto: i2v when i2v_model is set, else builtin.")
    i2v_model: Path | None = Field(None, description="Path to the illust2vec_ver200 ONNX file.")
    onnx_model: Path | None = Field(None, description="Path to another ONNX image model (extractor=onnx).")
    onnx_preset: Path | None = Field(
        None, description="A shipped preset name (i2v, wd14, ...) or a TOML/JSON file describing the model."
    )
    onnx_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads; 0 lets onnxruntime choose.")
    batch_size: int = Field(16, ge=1, le=1024)

    # Image guards
    max_image_bytes: int = Field(20_000_000, ge=1024, description="Files larger than this are refused unread.")
    max_image_pixels: int = Field(60_000_000, ge=10_000, description="Pillow's decompression-bomb limit.")
    max_decode_bytes: int = Field(
        256 * 2**20, ge=2**20,
        description="The most memory one image's decode may take, in bytes: pixels times the bytes per pixel of its "
        "mode and bit depth, with the RGB conversion's copies; larger images are refused before decoding.",
    )

    # Classification and the reject rule
    model: Literal["et", "rf", "rf-published", "lr", "hgb", "svm", "ensemble"] = "et"
    score_kind: ScoreKind = "margin"
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Override the active model's threshold (margin 0.3 is the published rule)."
    )
    target_precision: float = Field(0.98, gt=0.5, le=1.0, description="2D precision the threshold is chosen for.")
    retrain_tolerance: float = Field(
        0.05, ge=0.0, le=1.0,
        description="How much worse a new model's CV 2D-to-feed share or review rate may be than the active "
        "model's and still go live (its feed precision must meet the target in any case).",
    )
    min_margin_2d: float = Field(
        0.4, ge=0.0, lt=1.0, description="The 2D threshold chosen at training is never looser than this margin."
    )
    cv_folds: int = Field(5, ge=2, le=20)
    seed: int = 0

    # Source: the X home timeline, or a folder of images ("folder:/path")
    source: str = Field("x", description='"x" for the home timeline, or "folder:DIR" for new image files in DIR.')
    x_api_base_url: str = Field("https://api.twitter.com", description="Where X API calls go (a sandbox, a proxy).")
    x_consumer_key: SecretStr | None = None
    x_consumer_secret: SecretStr | None = None
    x_access_token: SecretStr | None = None
    x_access_token_secret: SecretStr | None = None
    x_bearer_token: SecretStr | None = Field(None, description="An OAuth 2.0 *user* access token (not app-only).")
    x_client_id: str | None = Field(None, description="OAuth 2.0 client id of your X app (nijifeed login).")
    x_client_secret: SecretStr | None = Field(None, description="OAuth 2.0 client secret (confidential clients only).")
    x_refresh_token: SecretStr | None = Field(
        None, description="An OAuth 2.0 refresh token to seed a headless install (used once; the stored one wins)."
    )
    x_redirect_uri: str = Field("http://127.0.0.1:8765/callback",
                                description="The OAuth 2.0 callback URL registered for your X app (nijifeed login).")
    x_authorize_url: str | None = Field(
        None, description="OAuth 2.0 authorize page; default https://x.com/i/oauth2/authorize (or the sandbox's)."
    )
    x_max_results: int = Field(100, ge=5, le=100, description="Posts per page; reads are billed per post.")
    x_max_pages: int = Field(8, ge=1, le=50, description="Pages followed back to the last seen post per poll.")
    x_read_cost_usd: float = Field(0.005, ge=0, description="Estimated price of one post read, for the cost line.")
    x_daily_read_limit: int = Field(
        0, ge=0, description="At most this many posts read per UTC day (the unit X bills, referenced posts included); "
        "when the next page could pass it, polling pauses until the next UTC day. 0: no limit.",
    )
    x_first_poll_posts: int = Field(
        100, ge=5, le=800, description="The first poll of a fresh data dir (no cursor yet) reads at most this many "
        "posts instead of the API's whole 800-post window.",
    )
    x_retries: int = Field(3, ge=0, le=10, description="Retries of 5xx answers, timeouts and connection errors.")
    x_backoff: float = Field(1.0, gt=0, le=60, description="Base seconds of the exponential backoff (with jitter).")
    folder_recursive: bool = Field(False, description="folder source: look in subfolders too.")
    folder_settle: float = Field(1.0, ge=0, description="folder source: seconds a new file must sit before it is read.")
    http_timeout: float = Field(15.0, gt=0, le=300, description="Seconds; every HTTP call has a timeout.")
    poll_interval: int = Field(300, ge=1, description="Seconds between polls (a cost setting: reads are billed).")
    poll_jitter: float = Field(0.1, ge=0, le=1, description="Random share of the interval added to each poll.")

    # Media
    photo_variant: Literal["thumb", "small", "medium", "large", "orig", "360x360", "900x900"] = "small"
    classify_previews: bool = Field(False, description="Classify video and GIF preview images (else skipped).")
    download_concurrency: int = Field(4, ge=1, le=64)
    download_retries: int = Field(3, ge=0, le=10, description="Retries within one attempt (timeouts, 5xx).")
    max_download_attempts: int = Field(3, ge=1, le=20, description="Poll cycles a failing download is retried in.")
    media_hosts: list[str] = Field(default_factory=list, description="Extra hosts media may be fetched from.")

    # Web
    web_host: str = Field("127.0.0.1", description="Address the web page binds; elsewhere needs web_token.")
    web_port: int = Field(8000, ge=1, le=65535)
    web_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra names the web face answers to in the Host header (a reverse proxy's public name, a "
        "published port): NAME (any port) or NAME:PORT. The bound address and loopback names at the bound port are "
        "always accepted; any other Host is refused (DNS rebinding).",
    )

    # Routing
    audit_rate: float = Field(0.02, ge=0, le=1, description="Share of confident verdicts also sent to review.")

    # Review and retraining
    review_graphics: Literal["auto", "kitty", "iterm", "sixel", "blocks", "none"] = Field(
        "auto", description="How `nijifeed review` draws images: auto detects the terminal's protocol."
    )
    review_audit_every: int = Field(5, ge=1, le=100, description="One audit item in every this many shown.")
    retrain_after_labels: int = Field(
        20, ge=0, description="Retrain once this many new labels exist since the last training; 0 disables."
    )
    starter_model: bool = Field(
        True, description="With no model yet, train the starter model on the bundled labelled samples at the first "
        "command that needs a model (run, poll, demo, triage, eval), so the first poll is already classified.",
    )

    # Web and forwarders
    web_token: SecretStr | None = Field(
        None, description="Access token for the web face; required when web_host is not a loopback address."
    )
    web_page_size: int = Field(30, ge=1, le=200, description="Posts per page of the web timeline and the feeds.")
    web_thumb_size: int = Field(480, ge=64, le=2048, description="Longest side, in pixels, of served thumbnails.")
    cache_max_bytes: int = Field(
        2_000_000_000, ge=0, description="Bound of the image cache (originals + thumbnails); 0: unbounded."
    )
    cache_keep_entries: int = Field(
        200, ge=0, description="Images of the newest this many feed posts are never evicted from the cache."
    )
    forward_x_repost: bool = Field(False, description="Repost (retweet) each new feed post with the X account.")
    forward_x_bookmark: bool = Field(False, description="Bookmark each new feed post with the X account.")
    forward_webhook_url: SecretStr | None = Field(None, description="POST each new feed post here (JSON).")
    forward_webhook_format: Literal["json", "discord"] = Field("json", description="Webhook body: json or discord.")
    forward_interval: int = Field(60, ge=1, description="Seconds between deliveries of the forwarders' outbox.")
    forward_max_attempts: int = Field(8, ge=1, le=50, description="Tries of one forward before it is given up.")
    forward_backoff: float = Field(30.0, gt=0, description="Seconds before the first retry; doubled each time.")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value != "x" and not (value.startswith("folder:") and len(value) > len("folder:")):
            raise ValueError('expected "x" or "folder:DIR"')
        return value

    @field_validator("x_api_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("expected an http(s) URL such as https://api.twitter.com")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        except ValueError as exc:
            raise ValueError(f"not a valid URL ({exc})") from None
        if not parts.hostname:
            raise ValueError("the URL has no host")
        return value.rstrip("/")

    @field_validator("forward_webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("expected an http(s) URL")
        return value

    @field_validator("web_allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        names = [name.strip().lower() for name in value]
        for name in names:
            if not re.fullmatch(r"(\[[0-9a-f:.%]+\]|[a-z0-9._-]+)(:[0-9]{1,5})?", name):
                raise ValueError(f"{name!r} is not a host name, NAME:PORT or [IPv6]:PORT (no scheme, no path)")
        return names

    @field_validator("i2v_model", "onnx_model", "onnx_preset")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        try:
            return value.expanduser() if value is not None else None
        except RuntimeError:  # ~user of no known user, or no home directory at all
            raise ValueError(f"cannot expand {str(value).split('/')[0]}: no such home directory") from None

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: Path) -> Path:
        if "\x00" in str(value):
            raise ValueError("a path cannot contain a NUL character")
        existing = next((path for path in (value, *value.parents) if path.exists()), None)
        if existing is not None and not existing.is_dir():
            raise ValueError("exists and is not a directory" if existing == value else f"{existing} is not a directory")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        config_file = os.environ.get("NIJIFEED_CONFIG")
        if config_file:
            path = Path(config_file).expanduser()
            if not path.is_file():
                raise ConfigError(f"NIJIFEED_CONFIG: no such file: {path}")
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"NIJIFEED_CONFIG: {path} is not valid TOML: {_one_line(exc)}") from None
            except OSError as exc:
                raise ConfigError(f"NIJIFEED_CONFIG: cannot read {path}: {exc.strerror or exc}") from None
        return tuple(sources)

    # Paths derived from data_dir, in one place so every part agrees on the layout.
    @property
    def db_path(self) -> Path:
        return self.data_dir / "nijifeed.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache" / "images"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "daemon.lock"

    @property
    def x_tokens_path(self) -> Path:
        return self.data_dir / "x_tokens.json"


_SECRET_HINT = re.compile(r"secret|token|key|password", re.IGNORECASE)


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    """Whether the setting at ``loc`` holds a secret: its name says so, or it is a ``SecretStr`` field (the
    webhook URL, whose path or query may carry a token). Its value is then never shown."""
    name = str(loc[0]) if loc else ""
    if _SECRET_HINT.search(".".join(str(part) for part in loc)):
        return True
    info = Settings.model_fields.get(name)
    return info is not None and SecretStr in (info.annotation, *get_args(info.annotation))


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning pydantic's report into one message per bad setting, named as the user sets it."""
    try:
        return Settings(**overrides)
    except SettingsError as exc:  # a value pydantic-settings could not parse before validation (a list's JSON)
        found = re.search(r'field "([^"]+)"', str(exc))
        name = f"NIJIFEED_{found.group(1).upper()}" if found else "settings"
        raise ConfigError(f"{name}: cannot parse the value ({_one_line(exc.__cause__ or exc)}); a list is "
                          'written as a,b or as JSON: ["a","b"]') from None
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            shown = "***" if _is_secret(tuple(error["loc"])) else repr(error.get("input"))
            message = error["msg"]
            if error["type"] == "extra_forbidden":  # a key of the TOML file that is no setting
                message = "not a setting" + _did_you_mean(f"NIJIFEED_{field.upper()}")
            lines.append(f"NIJIFEED_{field.upper()}: {message} (got {shown})")
        raise ConfigError(lines[0] if len(lines) == 1 else "invalid settings:\n  " + "\n  ".join(lines)) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


#: ``NIJIFEED_*`` variables that are not settings but are read all the same: the config file's path, and the
#: variable ``deploy/compose.yaml`` reads for the models' folder (harmless when it is in the env file too).
OTHER_ENV_NAMES = frozenset({"NIJIFEED_CONFIG", "NIJIFEED_MODELS_DIR"})


def _known_env_names() -> set[str]:
    return {f"NIJIFEED_{name.upper()}" for name in Settings.model_fields} | OTHER_ENV_NAMES


def _did_you_mean(name: str) -> str:
    near = get_close_matches(name.upper(), sorted(_known_env_names()), n=1, cutoff=0.75)
    return f" (did you mean {near[0]}?)" if near else ""


def unknown_env_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning for each ``NIJIFEED_*`` variable of ``environ`` (default: the process's) that is no setting,
    with the nearest real name: pydantic-settings ignores such a variable, so a misspelt setting
    (``NIJIFEED_POLL_INTERVALL``) would otherwise be left at its default without a word."""
    known = _known_env_names()
    names = os.environ if environ is None else environ
    warnings = []
    for name in sorted(names):
        upper = name.upper()  # settings are read from the environment in any case
        if upper.startswith("NIJIFEED_") and upper not in known:
            hint = _did_you_mean(upper) or " (config/nijifeed.env.example lists every setting)"
            warnings.append(f"{name} is not a nijifeed setting and is ignored{hint}")
    return warnings
