"""Issue 9: untrusted text never drives the terminal. Post text, display names, handles, media keys, reasons and
API errors with escape sequences (OSC 52 clipboard writes among them) are printed cleaned by every command that
shows them, and text like ``[/bold]`` is shown as it is, never read as rich markup (it crashed `nijifeed feed`)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from rich.console import Console

from service.review import open_items
from service.review.session import ReviewSession
from service.sources import MediaRef, OriginalPost, Post

OSC52 = "\x1b]52;c;SGFja2VkIQ==\x07"  # "write 'Hacked!' to the clipboard"
HOSTILE = (f"{OSC52}[/bold][red]Evil[/red]\x1b[2J\x1b[H\x9b31m\x9d52;c;eA==\x9c\x1b]8;;https://evil.example\x1b\\"
           "link\x1b]8;;\x1b\\\r\x08\x00\x7f\x1bPq#0;2;0;0;0\x1b\\")
SHOWN = "[/bold][red]Evil[/red]link"  # what is left to see
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))]


def assert_clean(output: str) -> None:
    found = sorted({repr(c) for c in output if c in CONTROLS})
    assert not found, f"control characters reached the terminal: {found}"


def poison(world) -> None:
    """Every field the outside writes, in the store as a poll would leave it."""
    conn = world.store.conn
    conn.execute("UPDATE posts SET author_name = ?, author_handle = author_handle || ?, text = ? || text",
                 (HOSTILE, HOSTILE, HOSTILE))
    conn.execute("UPDATE media SET media_key = media_key || ?, reason = ?", (HOSTILE, HOSTILE))
    conn.execute("INSERT INTO polls (source, started_at, finished_at, error) VALUES "
                 "('x', '2026-05-09T10:00:00+00:00', '2026-05-09T10:00:01+00:00', ?)", (HOSTILE,))


def test_clean_removes_escape_sequences_whole():
    from service.terminal import clean

    assert clean(HOSTILE) == SHOWN
    assert clean("a\x1b[31mb\x1b[0m") == "ab"
    assert clean("x\x1b]52;c;Zm9v\x1b\\y") == "xy"  # OSC ended by ST
    assert clean("x\x1b]52;c;Zm9v") == "x"  # unterminated: to the end
    assert clean("x\x9b2Jy\x9d0;title\x07z") == "xyz"  # 8-bit CSI and OSC
    assert clean("a\x1b(0b\x1bMc\x1b") == "abc"  # charset switch, reverse index, a lone ESC
    assert clean("one\ntwo\tthree\r") == "one two three"
    assert clean("one\ntwo\tthree\r", newlines=True) == "one\ntwo\tthree"
    assert clean(None) == "" and clean(42) == "42"
    assert clean("クリエイター 🎨 — «ok»") == "クリエイター 🎨 — «ok»"  # ordinary text is left alone


def test_json_text_escapes_c1_and_del_losslessly():
    from service.terminal import json_text

    value = {"text": HOSTILE, "name": "ok"}
    dumped = json_text(value, indent=2)
    assert_clean(dumped.replace("\n", ""))
    assert json.loads(dumped) == value


def test_feed_prints_hostile_names_and_text_as_text(world, cli):
    poison(world)
    result = cli("feed")  # a MarkupError before: an account named like [/bold]
    assert_clean(result.stdout.replace("\n", ""))
    assert SHOWN in result.stdout and "52;c;" not in result.stdout and "evil.example" not in result.stdout
    as_json = cli("feed", "--json")
    assert_clean(as_json.stdout.replace("\n", ""))
    assert json.loads(as_json.stdout)[0]["author_name"] == HOSTILE  # the data itself is kept, escaped


def test_accounts_named_like_markup(world, cli):
    """The crash of the issue: a followed or retweeting account named like ``[/bold]``."""
    original = world.store.conn.execute("SELECT * FROM posts WHERE id = '1003'").fetchone()
    world.store.add_posts([Post(
        id="3000", text="RT @artist3", created_at="2026-05-09T11:00:00Z", url="https://x.com/x/status/3000",
        author_handle="[/bold]", media=(MediaRef("m3", "photo", "https://pbs.twimg.com/media/m3.jpg"),),
        via="retweet", via_id="1003",
        original=OriginalPost(id="1003", text=original["text"], url=original["url"],
                              created_at=original["created_at"], author_name="[/i]", author_handle="[red]"),
    )])
    world.store.conn.execute("UPDATE posts SET author_name = '[/bold]' WHERE id = '1005'")
    result = cli("feed")
    assert "retweeted by @[/bold]" in result.stdout and "[/bold] @artist5" in result.stdout


@pytest.mark.parametrize("command", [["review", "list"], ["media", "list"], ["status"], ["media", "show", "1"],
                                     ["review", "list", "--json"], ["media", "list", "--json"]])
def test_other_commands_print_cleaned_fields(world, cli, command):
    poison(world)
    result = cli(*command)
    assert_clean(result.stdout.replace("\n", ""))
    if "--json" not in command and command != ["media", "show", "1"]:
        assert "[/bold][red]Evil" in result.stdout  # shown literally: not parsed as markup


def test_an_error_quoting_untrusted_text_is_one_clean_line(world, cli):
    result = cli("media", "show", f"[/bold]{OSC52}", ok=False)  # a MarkupError before
    assert result.exit_code == 1
    assert_clean(result.output.replace("\n", ""))
    assert "no media with id or key" in result.output and "[/bold]" in result.output


def test_the_review_session_screen_is_cleaned(world):
    poison(world)
    session = ReviewSession(world.store, open_items(world.store, limit=None, audit_every=3), clear="",
                            open_item=lambda item: f"no display to open it on: {item.url}")
    session.handle("o")  # the message quotes the (hostile) URL
    screen = session.screen(width=100)
    assert_clean(screen.replace("\n", ""))
    assert "[/bold][red]Evil" in screen


def test_log_records_are_cleaned():
    from service.cli.base import CleanRichHandler

    buffer = io.StringIO()
    handler = CleanRichHandler(console=Console(file=buffer, width=200), show_path=False, show_time=False)
    logger = logging.getLogger("nijifeed.test.terminal")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("poll failed: %s", HOSTILE)
    finally:
        logger.removeHandler(handler)
    assert_clean(buffer.getvalue().replace("\n", ""))
    assert "poll failed: [/bold][red]Evil" in buffer.getvalue()
