"""``nijifeed login``: OAuth 2.0 (PKCE) or OAuth 1.0a (PIN) for the X account, tokens kept in the data dir."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Optional

import typer

from service.cli.base import command, console, ctx_of
from service.config import Settings
from service.sources.x_client import XClient, secret_text
from service.sources.x_login import OAuth1Login, OAuth2Login

Ask = Callable[..., str]


def _ask(text: str, *, hide: bool = False, default: str | None = None) -> str:
    return str(typer.prompt(text, hide_input=hide, default=default, show_default=default not in (None, "")))


def run_login(settings: Settings, *, method: str = "oauth2", client_id: str | None = None,
              client_secret: str | None = None, ask: Ask = _ask) -> str:
    """Run one login flow, save the tokens, check them with ``GET /2/users/me``; the account's @handle."""
    if method == "oauth1":
        key = secret_text(settings.x_consumer_key) or ask("API key (consumer key) of your X app", hide=True)
        secret = secret_text(settings.x_consumer_secret) or ask("API key secret (consumer secret)", hide=True)
        login1 = OAuth1Login.start(settings, consumer_key=key.strip(), consumer_secret=secret.strip())
        console.print("Open this URL in any browser (logged in to X as the account to read), authorize the app, "
                      "and type the PIN it shows:")
        console.print(login1.url, soft_wrap=True, markup=False, highlight=False)
        login1.finish(ask("PIN"))
    else:
        client_id = (client_id or settings.x_client_id or ask("OAuth 2.0 client id of your X app")).strip()
        secret2 = client_secret or secret_text(settings.x_client_secret)
        login2 = OAuth2Login.start(settings, client_id=client_id, client_secret=secret2)
        console.print(f"Scopes asked for: {' '.join(login2.scopes)}")
        console.print("Open this URL in any browser (logged in to X as the account to read) and authorize the app:")
        console.print(login2.url, soft_wrap=True, markup=False, highlight=False)
        console.print(f"X then sends the browser to {settings.x_redirect_uri}?...; the page may not load (nothing "
                      "needs to listen there). Copy the whole address from the address bar and paste it here.",
                      markup=False)
        login2.finish(ask("Redirected URL"))
    console.print(f"tokens saved to {settings.x_tokens_path} (mode 0600)", markup=False)
    if method == "oauth2" and secret_text(settings.x_consumer_key) and secret_text(settings.x_access_token):
        console.print("note: the NIJIFEED_X_CONSUMER_*/ACCESS_TOKEN* settings are set and win over these tokens; "
                      "unset them to use the login", style="yellow")
    client = XClient.from_settings(settings)
    client.user_id()
    handle = client.user_handle or "?"
    console.print(f"logged in as @{handle} ({client.auth_mode})", markup=False)
    return handle


@command(name="login")
def login(
    ctx: typer.Context,
    oauth1: Annotated[bool, typer.Option("--oauth1", help="OAuth 1.0a with a PIN (needs only consumer keys).")] = False,
    client_id: Annotated[
        Optional[str], typer.Option("--client-id", help="OAuth 2.0 client id; default NIJIFEED_X_CLIENT_ID.")
    ] = None,
) -> None:
    """Log in to X and keep tokens that last (refreshed automatically): OAuth 2.0 with PKCE, or --oauth1 (PIN).
    Works over SSH: open the printed URL anywhere and paste back where it leads (or the PIN)."""
    run_login(ctx_of(ctx).settings, method="oauth1" if oauth1 else "oauth2", client_id=client_id)
