"""The README against the code, as sqlite-utils' ``tests/test_docs.py`` does: every command of the ``nijifeed`` app
and every route of the web app appears in README.md, and every path the README's table of web paths promises is
served by ``create_app``. Each failure names what is missing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from starlette.routing import Match, Mount

from service.cli import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def command_tree(command, path: tuple[str, ...] = ()):
    """Every command and sub-group under ``command`` (the click tree typer builds), by its words."""
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if sub.hidden:
            continue
        yield path + (name,), sub
        yield from command_tree(sub, path + (name,))


COMMANDS = dict(command_tree(typer.main.get_command(app)))

FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
#: ``nijifeed review label ...`` in a code block or span; a sub-command also as a span that starts
#: `` `review label ...` `` (the short form the README uses inside a command's own section).
INVOCATION = re.compile(r"\bnijifeed((?: [a-z][a-z0-9-]*)+)")
SHORT_FORM = re.compile(r"([a-z][a-z0-9-]*(?: [a-z][a-z0-9-]*)+)")


def prefixes(words: list[str], shortest: int) -> set[tuple[str, ...]]:
    return {tuple(words[:n]) for n in range(shortest, len(words) + 1)}


def documented_commands(text: str) -> set[tuple[str, ...]]:
    """Every command path the README shows being run (and each leading part of it: a group)."""
    blocks = FENCED.findall(text)
    spans = INLINE.findall(FENCED.sub("", text))
    found: set[tuple[str, ...]] = set()
    for code in blocks + spans:
        for words in INVOCATION.findall(code):
            found |= prefixes(words.split(), 1)
    for span in spans:
        if not span.startswith("nijifeed") and (short := SHORT_FORM.match(span)):
            found |= prefixes(short.group(1).split(), 2)
    return found


DOCUMENTED_COMMANDS = documented_commands(README)


def web_table_paths(text: str) -> list[str]:
    """The paths in the README's table of web paths (``| path | what |``), as concrete-looking paths: a query is
    cut off (``/healthz?ready=1`` is ``/healthz``), placeholders stay (``/img/<sha256>``)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"\|\s*path\s*\|\s*what\s*\|", line.strip()))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    paths = [span.split("?", 1)[0] for row in rows for span in re.findall(r"`(/[^`\s]*)`", row)]
    return list(dict.fromkeys(paths))


TABLE_PATHS = web_table_paths(README)


def served_by(route, documented: str) -> bool:
    """Whether ``route`` answers a GET of ``documented`` (a placeholder such as ``<sha256>`` stands for any
    value), by Starlette's own matching."""
    concrete = re.sub(r"<[^>]*>", "x", documented)
    match, _ = route.matches({"type": "http", "path": concrete, "root_path": "", "method": "GET"})
    return match == Match.FULL


def readme_form(route) -> str:
    """A route as the README would write it: ``/img/<sha256>``; a mount as ``/static/<...>``."""
    path = re.sub(r"\{(\w+)(?::\w+)?\}", r"<\1>", route.path)
    return f"{path}/<...>" if isinstance(route, Mount) else path


@pytest.fixture
def web_routes(tmp_path):
    """The routes of the web face as ``create_app`` builds it (what ``nijifeed web`` serves)."""
    from service.config import Settings
    from service.web import create_app

    return create_app(Settings(data_dir=tmp_path / "data")).routes


# --- commands -------------------------------------------------------------------------------------------------


def test_the_command_tree_is_walked():
    assert {("run",), ("model", "use"), ("review",), ("review", "label"), ("media", "show")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_is_in_the_readme(path):
    assert path in DOCUMENTED_COMMANDS, f"README.md never shows `nijifeed {' '.join(path)}`"


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help(path):
    assert COMMANDS[path].help, f"`nijifeed {' '.join(path)}` has no help text"


# --- web routes -----------------------------------------------------------------------------------------------


def test_the_web_table_is_found():
    assert {"/", "/feed.atom", "/img/<sha256>", "/healthz", "/readyz"} <= set(TABLE_PATHS)


def test_every_web_route_is_in_the_readme(web_routes):
    missing = [readme_form(r) for r in web_routes if not any(served_by(r, path) for path in TABLE_PATHS)]
    assert not missing, f"README.md's table of web paths (| path | what |) lacks: {', '.join(missing)}"


@pytest.mark.parametrize("path", TABLE_PATHS)
def test_every_path_in_the_readme_is_served(web_routes, path):
    assert any(served_by(r, path) for r in web_routes), f"README.md lists {path}, but create_app serves no such path"
