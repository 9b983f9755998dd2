"""`nijifeed doctor`: every check a user needs before leaving the daemon running, each a ``Check`` that passes or
fails with the fix.

The checks, in order: the config file and settings; the X credentials (one ``GET /2/users/me`` through ``XClient``,
whatever auth is configured); the token's expiry and refresh; the clock (the ``Date`` of that answer: OAuth 1.0a
signatures carry a timestamp the API refuses when it is off by minutes); the model and its extractor; the data dir
(writable, free space); the web face's bind and token; write access for the switched-on forwarders; the daily
read limit against the poll interval and page size. Nothing here changes the data dir beyond creating it (and
its store, as any command does) and one test file it removes again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service.config import ConfigError, Settings
from service.errors import NijifeedError
from service.sources import SourceError

#: Less free space than this in the data dir fails the check (the image cache alone may take 2 GB by default).
MIN_FREE_BYTES = 1_000_000_000
#: More clock skew than this against the API's ``Date`` fails (the API refuses OAuth 1.0a timestamps beyond it).
MAX_SKEW_S = 300.0


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    fix: str | None = None

    def lines(self) -> list[str]:
        mark = "✓" if self.ok else "✗"
        out = [f"{mark} {self.name}: {self.message}"]
        if self.fix and not self.ok:
            out.append(f"    fix: {self.fix}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_check(settings: Settings | None, error: ConfigError | None) -> Check:
    path = os.environ.get("NIJIFEED_CONFIG")
    where = f"config file {path}" if path else "no config file (NIJIFEED_CONFIG unset): environment and defaults"
    if error is not None or settings is None:
        return Check("config", False, str(error or "no settings"),
                     "correct the setting named above (config/nijifeed.env.example documents every one)")
    return Check("config", True, f"{where}; settings valid")


class Doctor:
    """Runs the checks for ``settings``; ``clock``: Unix seconds (the local time compared with the API's)."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.client: Any = None
        self.client_error: SourceError | None = None
        self.user_ok = False

    def run(self) -> list[Check]:
        checks: list[Check] = []
        for check in (self.credentials, self.token, self.clock_skew, self.model, self.data_dir, self.web,
                      self.forwarders, self.read_limit):
            try:
                checks.append(check())
            except NijifeedError as exc:  # a check that cannot run says so, as a failure
                checks.append(Check(check.__name__.replace("_", " "), False, str(exc)))
        return checks

    # --- X ---------------------------------------------------------------------------------------------------------

    def _needs_x(self) -> bool:
        s = self.settings
        return s.source == "x" or s.forward_x_repost or s.forward_x_bookmark

    def credentials(self) -> Check:
        if not self._needs_x():
            return Check("credentials", True, f"source {self.settings.source}: no X credentials needed")
        from service.sources.x_client import XClient

        try:
            self.client = XClient.from_settings(self.settings)
        except SourceError as exc:
            self.client_error = exc
            return Check("credentials", False, str(exc),
                         "run `nijifeed login` or set the keys in the config file (see the README, Credentials)")
        try:
            user_id = self.client.user_id()
        except SourceError as exc:
            self.client_error = exc
            return Check("credentials", False, f"GET /2/users/me failed: {exc}",
                         "see the checks above; `nijifeed login` makes new tokens")
        self.user_ok = True
        mode = {"oauth1": "OAuth 1.0a user context", "oauth2-user": "OAuth 2.0 user token"}.get(
            self.client.auth_mode, str(self.client.auth_mode))
        return Check("credentials", True, f"@{self.client.user_handle} (id {user_id}), {mode}, at "
                     f"{self.settings.x_api_base_url}")

    def token(self) -> Check:
        name = "token expiry"
        client = self.client
        if client is None:
            return Check(name, not self._needs_x(), "not checked: no X client" if self._needs_x()
                         else "no X credentials needed", "fix the credentials first" if self._needs_x() else None)
        if client.auth_mode == "oauth1":
            return Check(name, True, "OAuth 1.0a tokens do not expire (until revoked or regenerated in the portal)")
        refreshable = getattr(client, "refreshable", None)
        if refreshable is None:
            return Check(name, False, "an OAuth 2.0 user token expires after 2 hours and this install cannot refresh "
                         "it (token refresh not configured)",
                         "use OAuth 1.0a keys (NIJIFEED_X_CONSUMER_KEY, ...), which do not expire")
        if not refreshable:
            return Check(name, False, "NIJIFEED_X_BEARER_TOKEN is an OAuth 2.0 user token that expires after 2 hours "
                         "and is not refreshed here: the daemon stops reading when it does",
                         "run `nijifeed login` (OAuth 2.0 with offline.access: refreshed automatically), or set "
                         "NIJIFEED_X_REFRESH_TOKEN with NIJIFEED_X_CLIENT_ID, or use OAuth 1.0a keys")
        expires = getattr(client, "token_expires_at", None)
        left = "" if expires is None else f"; the current access token expires in {(expires - self.clock()) / 60:.0f} min"
        return Check(name, True, f"OAuth 2.0 token refreshed automatically before it expires{left}")

    def clock_skew(self) -> Check:
        name = "clock"
        if self.client is None:
            return Check(name, not self._needs_x(), "not compared: no X client" if self._needs_x()
                         else "not compared (no X API in use)", "fix the credentials first" if self._needs_x() else None)
        date = self.client._client.session.last_headers.get("date") if hasattr(self.client, "_client") else None
        if not date:
            return Check(name, False, "not compared: the API's answer had no Date header",
                         "check NIJIFEED_X_API_BASE_URL and the network; keep the clock synchronised (NTP)")
        try:
            server = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return Check(name, False, f"not compared: unreadable Date header {date!r}", "check NIJIFEED_X_API_BASE_URL")
        skew = self.clock() - server
        side = "ahead of" if skew > 0 else "behind"
        if abs(skew) > MAX_SKEW_S:
            return Check(name, False, f"this machine's clock is {abs(skew):.0f} s {side} the X API's (more than "
                         f"{MAX_SKEW_S:.0f} s): OAuth 1.0a requests are refused with 401",
                         "synchronise the clock (e.g. `timedatectl set-ntp true`, or install chrony)")
        return Check(name, True, f"within {max(1.0, abs(skew)):.0f} s of the X API's")

    # --- model, data dir --------------------------------------------------------------------------------------------

    def model(self) -> Check:
        from service.classify.registry import ModelError, load_model
        from service.features import make_extractor
        from service.store import Store

        name = "model"
        settings = self.settings
        try:
            extractor = make_extractor(settings)
        except NijifeedError as exc:
            return Check(name, False, f"the feature extractor cannot be loaded: {exc}",
                         "fix NIJIFEED_EXTRACTOR / NIJIFEED_ONNX_MODEL / NIJIFEED_ONNX_PRESET / NIJIFEED_I2V_MODEL")
        row = None
        if settings.db_path.exists():
            try:
                with Store.open(settings.db_path) as store:
                    row = store.active_model()
            except Exception as exc:  # noqa: BLE001 - a store that cannot be read is this check's finding
                return Check(name, False, f"the store {settings.db_path} cannot be read: {exc}",
                             "restore the data dir from a backup, or move it away to start fresh")
        if row is None:
            if not settings.starter_model:
                return Check(name, False, "no model yet, and NIJIFEED_STARTER_MODEL=false: images would wait",
                             "run `nijifeed train --starter`, or `nijifeed train --from-folders NEG_DIR POS_DIR`")
            from service.pipeline.starter import starter_files

            try:
                count = len(starter_files())
            except NijifeedError as exc:
                return Check(name, False, f"no model yet, and the bundled samples cannot be read: {exc}",
                             "reinstall nijifeed")
            return Check(name, True, f"no model yet: the starter model will be trained at first start from {count} "
                         f"bundled samples with the '{extractor.name}' extractor")
        version, path = int(row["version"]), Path(row["path"])
        if not path.is_file():
            return Check(name, False, f"the active model v{version} is missing: {path}",
                         "`nijifeed model list` then `nijifeed model use VERSION` to roll back, or "
                         "`nijifeed train --starter` to rebuild one")
        try:
            model = load_model(path, version)
            model.check_extractor(extractor.name, extractor.dim)
        except ModelError as exc:
            return Check(name, False, str(exc), "`nijifeed train --starter` retrains for the configured extractor")
        return Check(name, True, f"v{version} ({model.meta.kind}, '{model.meta.extractor}' features, "
                     f"{model.meta.dim}-d) matches the extractor")

    def data_dir(self) -> Check:
        name = "data dir"
        data_dir = self.settings.data_dir
        existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), None)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(prefix=".doctor-", dir=data_dir)
            os.close(handle)
            os.unlink(probe)
        except OSError as exc:
            return Check(name, False, f"{data_dir} is not writable: {exc.strerror or exc}",
                         f"give the daemon's user write access (chown/chmod {existing or data_dir}), or set "
                         "NIJIFEED_DATA_DIR to a writable folder")
        free = shutil.disk_usage(data_dir).free
        if free < MIN_FREE_BYTES:
            return Check(name, False, f"{data_dir}: only {free / 1e9:.2f} GB free (less than "
                         f"{MIN_FREE_BYTES / 1e9:.0f} GB)", "free some space, or lower NIJIFEED_CACHE_MAX_BYTES and "
                         "move NIJIFEED_DATA_DIR to a larger disk")
        return Check(name, True, f"{data_dir} writable, {free / 1e9:.1f} GB free")

    # --- web, forwarders, the read limit ---------------------------------------------------------------------------

    def web(self) -> Check:
        from service.web.security import check_exposure, is_loopback

        s = self.settings
        where = f"{s.web_host}:{s.web_port}"
        try:
            check_exposure(s)
        except ConfigError as exc:
            return Check("web", False, f"binds {where}, not loopback, with no NIJIFEED_WEB_TOKEN: nijifeed refuses "
                         "to start", str(exc).split(": ", 1)[-1])
        if is_loopback(s.web_host):
            return Check("web", True, f"binds {where} (loopback only)")
        return Check("web", True, f"binds {where} with NIJIFEED_WEB_TOKEN required (open /?token=TOKEN once)")

    def forwarders(self) -> Check:
        s = self.settings
        on = [name for name, flag in (("X repost", s.forward_x_repost), ("X bookmark", s.forward_x_bookmark)) if flag]
        problems: list[str] = []
        fixes: list[str] = []
        if on:
            level = ""
            if self.client is not None and hasattr(self.client, "_client"):
                level = str(self.client._client.session.last_headers.get("x-access-level") or "")
            if not self.user_ok:
                problems.append(f"{' and '.join(on)} need working X credentials")
                fixes.append("fix the credentials first")
            elif level and "write" not in level:
                problems.append(f"{' and '.join(on)} need write access, and the X token is '{level}' only")
                fixes.append("set the app's permissions to Read and write in the developer portal, then make new "
                             "tokens (`nijifeed login`)")
            else:
                tokens = getattr(self.client, "_oauth2", None)  # a refreshable OAuth 2.0 record (``x_tokens``)
                granted = set(str(tokens.get("scope") or "").split()) if isinstance(tokens, dict) else set()
                needed = {"tweet.write"} if s.forward_x_repost else set()
                needed |= {"bookmark.write"} if s.forward_x_bookmark else set()
                if granted and not needed <= granted:
                    problems.append(f"{' and '.join(on)} need the scopes {', '.join(sorted(needed - granted))}, which "
                                    "the OAuth 2.0 token was not granted")
                    fixes.append("run `nijifeed login` again with the forwarders switched on (it asks for the write "
                                 "scopes they need)")
        url = s.forward_webhook_url.get_secret_value() if s.forward_webhook_url else ""
        if url:
            on.append("webhook")
            problem = _webhook_problem(url, s.http_timeout)
            if problem:
                problems.append(problem)
                fixes.append("correct NIJIFEED_FORWARD_WEBHOOK_URL, or check this machine's network and DNS")
        if problems:
            return Check("forwarders", False, "; ".join(problems), "; ".join(fixes))
        if not on:
            return Check("forwarders", True, "none switched on")
        note = " (X write access is proved by the first forward)" if any(n.startswith("X ") for n in on) else ""
        return Check("forwarders", True, f"{', '.join(on)} ready{note}")

    def read_limit(self) -> Check:
        from service.sources.read_limit import MIN_PAGE_POSTS, PAGE_FACTOR, DailyReadLimit
        from service.store import Store

        s = self.settings
        name = "daily read limit"
        if s.source != "x":
            return Check(name, True, f"source {s.source}: no API reads")
        polls = 86_400 / s.poll_interval
        worst = int(polls * s.x_max_pages * s.x_max_results)
        cost = s.x_read_cost_usd
        worst_text = (f"worst case at one poll every {s.poll_interval} s of up to {s.x_max_pages} pages of "
                      f"{s.x_max_results}: {worst} reads/day (≈ ${worst * cost:.2f})")
        limit = DailyReadLimit.from_settings(s, clock=self.clock)
        if not limit:
            return Check(name, True, f"none set; {worst_text}; the first poll reads at most {s.x_first_poll_posts}")
        smallest = MIN_PAGE_POSTS * PAGE_FACTOR
        if limit.limit < smallest:
            return Check(name, False, f"NIJIFEED_X_DAILY_READ_LIMIT={limit.limit} is below {smallest}, the reads the "
                         f"smallest page (5 posts, each with up to {PAGE_FACTOR - 1} referenced posts) may bill: "
                         "nothing would ever be read", f"raise it to {smallest} or more, or 0 for no limit")
        today = ""
        if s.db_path.exists():
            with contextlib.suppress(Exception), Store.open(s.db_path) as store:
                state = limit.status(store)
                today = f"; {state['reads_today']} read today" + (
                    f", polling paused until {state['resets_at']}" if state["paused"] else "")
        binds = " (it binds first: on a busy day polling pauses until 00:00 UTC)" if limit.limit < worst else ""
        return Check(name, True, f"{limit.limit} reads/day (≈ ${limit.limit * cost:.2f}){binds}; {worst_text}{today}")


def _webhook_problem(url: str, timeout: float) -> str | None:
    """Why the webhook URL cannot work (None: its host answers a TCP connection). Nothing is sent to it."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return f"the webhook URL is not valid ({exc})"
    if parts.scheme not in ("http", "https") or not host:
        return "the webhook URL is not an http(s) URL with a host"
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 5.0)):
            pass
    except OSError as exc:
        return f"the webhook's host {host}:{port} cannot be reached ({exc.strerror or type(exc).__name__})"
    return None


def run_doctor(settings: Settings | None, error: ConfigError | None = None, *,
               clock: Callable[[], float] = time.time) -> list[Check]:
    """Every check; with no settings (a bad setting), only the config check, which fails."""
    checks = [config_check(settings, error)]
    if settings is not None and error is None:
        checks += Doctor(settings, clock=clock).run()
    return checks


__all__ = ["MAX_SKEW_S", "MIN_FREE_BYTES", "Check", "Doctor", "config_check", "run_doctor"]
