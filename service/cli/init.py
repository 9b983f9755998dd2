"""``nijifeed init``: the guided setup. It explains each choice, logs in (``login``), checks the account with
``GET /2/users/me``, shows what polling costs, asks for a daily read limit, and writes a TOML config (mode 0600)
with the command that starts the daemon. Re-runnable: an existing config's values are the defaults, its other keys
are kept, stored tokens are kept unless asked. ``--no-input`` asks nothing: flags, then the environment and the
existing config, then the defaults; it never logs in (that needs a browser), so the credentials must exist."""

from __future__ import annotations

import json
import math
import os
import shlex
import tomllib
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from service.cli.base import command, console, ctx_of
from service.cli.login import run_login
from service.config import ConfigError, Settings, load_settings
from service.errors import InputError
from service.files import write_atomic
from service.sources import SourceError
from service.sources.x_client import DEFAULT_API_BASE_URL, XClient

#: The keys init writes (the rest of an existing file is kept as it is).
KEYS = ("data_dir", "x_api_base_url", "x_client_id", "poll_interval", "x_max_results", "x_max_pages",
        "x_daily_read_limit")
DEFAULT_DAILY_LIMIT = 2000


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(key, item) for item in value) + "]"
    raise ConfigError(f"{key}: init can keep only plain values (text, numbers, booleans, lists); edit the file by hand")


def toml_text(values: dict[str, Any]) -> str:
    lines = ["# nijifeed settings, written by `nijifeed init` (re-run it to change them, or edit: every setting of",
             "# config/nijifeed.env.example works here in lower case without NIJIFEED_). The environment wins.", ""]
    lines += [f"{key} = {_toml_value(key, value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _existing(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({' '.join(str(exc).split())}): fix or remove it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def cost_lines(interval: int, max_results: int, max_pages: int, price: float, first_poll: int) -> list[str]:
    polls = 86_400 / interval
    full_page = polls * max_results
    ceiling = full_page * max_pages
    return [
        f"Polling every {interval} s is {polls:,.0f} polls a day. X bills each post read (about ${price:g} each, "
        "NIJIFEED_X_READ_COST_USD); a poll reads only the posts new since the last one, pages of up to "
        f"{max_results}, at most {max_pages} pages.",
        f"  a quiet timeline (a few new posts a poll): a few cents a day; the first poll reads up to {first_poll}",
        f"  every poll a full page:   {full_page:,.0f} reads/day = ${full_page * price:,.2f}/day "
        f"(${full_page * price * 30:,.2f}/month)",
        f"  every poll every page:    {ceiling:,.0f} reads/day = ${ceiling * price:,.2f}/day (the ceiling)",
    ]


def _ask_int(text: str, default: int, low: int, high: int | None = None) -> int:
    while True:
        value = typer.prompt(text, default=default, type=int)
        if value >= low and (high is None or value <= high):
            return int(value)
        console.print(f"  between {low} and {high}" if high is not None else f"  at least {low}")


def _has_credentials(settings: Settings) -> bool:
    try:
        XClient.from_settings(settings)
    except SourceError:
        return False
    return True


@command(name="init")
def init(
    ctx: typer.Context,
    no_input: Annotated[bool, typer.Option("--no-input", help="Ask nothing: flags, environment, defaults.")] = False,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="The TOML file to write; default NIJIFEED_CONFIG, else DATA_DIR/config.toml.")] = None,
    oauth1: Annotated[bool, typer.Option("--oauth1", help="Log in with OAuth 1.0a (PIN) instead of OAuth 2.0.")] = False,
    relogin: Annotated[bool, typer.Option("--login", help="Log in again even when tokens are stored.")] = False,
    client_id: Annotated[Optional[str], typer.Option("--client-id", help="OAuth 2.0 client id of your X app.")] = None,
    poll_interval: Annotated[Optional[int], typer.Option("--poll-interval", min=1, help="Seconds between polls.")] = None,
    max_results: Annotated[Optional[int], typer.Option("--max-results", min=5, max=100, help="Posts per page.")] = None,
    max_pages: Annotated[Optional[int], typer.Option("--max-pages", min=1, max=50, help="Pages per poll, at most.")] = None,
    daily_limit: Annotated[Optional[int], typer.Option(
        "--daily-limit", min=0, help="Posts read per UTC day, at most (0: no limit).")] = None,
) -> None:
    """Set nijifeed up step by step (re-runnable): X login, account check, polling cost, daily limit, config file."""
    settings = ctx_of(ctx).settings
    path = (config or Path(os.environ.get("NIJIFEED_CONFIG") or settings.data_dir / "config.toml")).expanduser()
    old = _existing(path)
    say = console.print
    say("[bold]nijifeed init[/bold]: X login, a check of the account, the polling cost and a daily limit, then a "
        f"config file ({path}).", highlight=False)
    say(f"Data dir (store, models, tokens): {settings.data_dir}" + ("" if not old else f"; updating {path}"),
        markup=False, highlight=False)

    # 1. the account
    say("\n[bold]1. Your X account[/bold]. nijifeed reads your home timeline as you (user context). OAuth 2.0 is "
        "recommended: tokens are refreshed automatically (needs your app's client id, and its callback URL set to "
        f"{settings.x_redirect_uri}). OAuth 1.0a needs the app's consumer keys and a PIN.", highlight=False)
    have = _has_credentials(settings)
    if no_input:
        if not have:
            raise InputError("no X credentials: run `nijifeed login` first (it needs a browser, anywhere), or set "
                             "NIJIFEED_X_CLIENT_ID with NIJIFEED_X_REFRESH_TOKEN, or the OAuth 1.0a keys")
    elif relogin or not have or typer.confirm("Credentials found. Log in again?", default=False):
        method = "oauth1" if oauth1 else None
        if method is None:
            choice = typer.prompt("Log in with 1) OAuth 2.0 or 2) OAuth 1.0a PIN", default="1")
            method = "oauth1" if choice.strip() in ("2", "oauth1") else "oauth2"
        secret = None
        if method == "oauth2" and settings.x_client_secret is None:
            client_id = client_id or settings.x_client_id or typer.prompt("OAuth 2.0 client id of your X app")
            secret = typer.prompt("Client secret (confidential clients; Enter if none)", default="",
                                  hide_input=True, show_default=False) or None
        run_login(settings, method=method, client_id=client_id, client_secret=secret)

    # 2. the check
    client = XClient.from_settings(settings)
    user_id = client.user_id()
    say(f"[green]✓[/green] GET /2/users/me: @{client.user_handle or '?'} (id {user_id}), {client.auth_mode}",
        highlight=False)

    # 3. cost
    say("\n[bold]2. Polling[/bold]. The interval, page size and pages per poll set what reading costs.")
    interval = poll_interval or int(old.get("poll_interval", settings.poll_interval))
    results = max_results or int(old.get("x_max_results", settings.x_max_results))
    pages = max_pages or int(old.get("x_max_pages", settings.x_max_pages))
    if not no_input:
        interval = poll_interval or _ask_int("Seconds between polls", interval, 1)
        results = max_results or _ask_int("Posts per page (5-100)", results, 5, 100)
        pages = max_pages or _ask_int("Pages per poll, at most (1-50)", pages, 1, 50)
    price = settings.x_read_cost_usd
    for line in cost_lines(interval, results, pages, price, settings.x_first_poll_posts):
        say(line, markup=False, highlight=False)

    # 4. the limit
    say("\n[bold]3. A daily limit[/bold]: the most posts read per UTC day; past it polling waits for the next day "
        "(0: none).")
    limit = daily_limit if daily_limit is not None else int(
        old.get("x_daily_read_limit", settings.x_daily_read_limit or DEFAULT_DAILY_LIMIT))
    if not no_input and daily_limit is None:
        limit = _ask_int("Posts read per day, at most", limit, 0)
    if limit:
        say(f"  {limit:,} reads/day is at most ${limit * price:,.2f}/day (${limit * price * 30:,.2f}/month)",
            highlight=False)
        if limit < math.ceil(86_400 / interval):
            say("  (fewer than one read per poll: most polls of a busy day will wait)", style="yellow")

    # 5. the file
    values: dict[str, Any] = dict(old)
    values.update(data_dir=str(settings.data_dir), poll_interval=interval, x_max_results=results, x_max_pages=pages,
                  x_daily_read_limit=limit)
    if settings.x_api_base_url.rstrip("/") != DEFAULT_API_BASE_URL:
        values["x_api_base_url"] = settings.x_api_base_url
    stored_client = client.oauth2_client_id
    if client_id or settings.x_client_id or stored_client:
        values["x_client_id"] = client_id or settings.x_client_id or stored_client
    text = toml_text(values)
    load_settings(**values)  # what the file says must be valid settings (a kept key too)
    write_atomic(path, text.encode())
    os.chmod(path, 0o600)
    say(f"\n[green]✓[/green] wrote {path} (mode 0600)", highlight=False)
    shadowed = [f"NIJIFEED_{key.upper()}" for key in KEYS if f"NIJIFEED_{key.upper()}" in os.environ
                and key in values and str(os.environ[f"NIJIFEED_{key.upper()}"]) != str(values[key])]
    if shadowed:
        say(f"note: {', '.join(shadowed)} set in the environment win over the file", style="yellow")
    say("Start the daemon with:")
    say(f"  NIJIFEED_CONFIG={shlex.quote(str(path))} nijifeed run", markup=False, highlight=False)
