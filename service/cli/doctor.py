"""`nijifeed doctor`: the checks to run before leaving the daemon running (``service.doctor``)."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from service.cli.base import app
from service.config import ConfigError, Settings
from service.doctor import run_doctor
from service.terminal import clean


@app.command()
def doctor(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check the config, X credentials and token, clock, model, data dir, web bind, forwarders and daily read
    limit: one line each, ✓ or ✗ with the fix. Exit 0 only when every check passes."""
    obj = ctx.obj
    quiet = logging.getLogger("service")
    level = quiet.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # the checks' lines say it all (-v shows the rest)
        quiet.setLevel(logging.WARNING)
    try:
        if isinstance(obj, ConfigError):
            checks = run_doctor(None, obj)
        else:
            settings: Settings = obj.settings
            checks = run_doctor(settings)
    finally:
        quiet.setLevel(level)
    if as_json:
        print(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        for check in checks:
            for line in check.lines():
                print(clean(line))  # messages quote the API, paths and settings
        failed = sum(not c.ok for c in checks)
        print("all checks passed" if not failed else f"{failed} of {len(checks)} checks failed")
    raise typer.Exit(0 if all(c.ok for c in checks) else 1)
