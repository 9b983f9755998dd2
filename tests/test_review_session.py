"""The interactive review: the session's keys on a real store, then the real command in a pseudo-terminal against a
data dir that a real poll of the X API sandbox filled."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap

import pexpect
import pytest
from pipelinekit import db, use
from reviewkit import make_world

from service.review import open_items
from service.review.keys import name_of
from service.review.session import ReviewSession
from service.words import UNDO_DEPTH as HISTORY


def session_for(world, **kwargs) -> ReviewSession:
    return ReviewSession(world.store, open_items(world.store, limit=None, audit_every=3), **kwargs)


def play(session: ReviewSession, keys: str | list[str]) -> list[str]:
    """Run the session on ``keys`` (one character = one key); return every screen it drew."""
    screens: list[str] = []
    pending = list(keys)
    session.run(lambda: pending.pop(0) if pending else "eof", screens.append)
    return screens


def test_keys_answer_skip_and_undo(world):
    session = session_for(world)
    order = [item.image_id for item in session.items]
    screens = play(session, ["a", "x", "backspace", "n", "space", "2", "q"])
    store = world.store
    assert store.current_label(order[0]) == "2d"
    assert store.current_label(order[1]) == "not2d"
    assert [r["label"] for r in store.label_history(order[1])] == ["not2d"]  # the undone answer is gone
    assert store.current_label(order[2]) is None  # skipped
    assert store.current_label(order[3]) == "2d"
    assert session.tally.line() == "labelled 3 (2 2D, 1 not 2D), skipped 1"
    assert "[1/6]" in screens[0] and "[3/6]" in screens[2] and "[2/6]" in screens[3]
    assert "answer taken back" in screens[3]


def test_undo_walks_back_over_skips_and_stops_after_the_last_ten(world, tmp_path):
    session = session_for(world)
    order = [item.image_id for item in session.items]
    play(session, ["a", "space", "u", "u", "q"])
    assert world.store.current_label(order[0]) is None and session.position == 0

    big = make_world(tmp_path / "big", plan=[("uncertain", 0.5 + i / 100, False) for i in range(HISTORY + 4)])
    many = session_for(big)
    screens = play(many, ["a"] * (HISTORY + 2) + ["u"] * (HISTORY + 1) + ["q"])
    assert many.position == 2 and "only the last 10" in screens[-1]
    assert len(big.store.labelled_images()) == 2
    big.store.close()


def test_items_answered_elsewhere_are_passed_over_and_new_ones_are_picked_up(world):
    session = session_for(world)
    order = [item.image_id for item in session.items]
    world.store.label_image(order[1], "2d", source="review")  # another reviewer, meanwhile
    screens = play(session, ["space", "q"])
    assert f"(image {order[2]}," in screens[1]
    assert session.items[1].image_id == order[2]

    refilled = ReviewSession(world.store, [], refill=lambda: open_items(world.store, limit=None))
    assert refilled.current() is not None


def test_help_open_and_unknown_keys(world):
    opened = []
    session = session_for(world, open_item=lambda item: opened.append(item.image_id) or "opened it")
    screens = play(session, ["?", "o", "z", "q"])
    assert "this help" in screens[1]
    assert opened == [session.items[0].image_id] and "opened it" in screens[2]
    assert "unknown key 'z'" in screens[3]
    assert [(int(r["id"]), r["label"]) for r in world.store.labelled_images()] == []


def test_screen_shows_who_what_why(world):
    session = session_for(world, draw=lambda item: "<IMAGE>\n")
    screen = session.screen(100)
    item = session.items[0]
    assert screen.index("<IMAGE>") < screen.index("[1/6]")
    assert f"@{item.author_handle}" in screen and item.text in screen and item.post_url in screen
    assert f"p(2D) {item.p_2d:.2f}" in screen and f"margin {item.margin:.2f}" in screen and "why: uncertain" in screen


def test_empty_queue(tmp_path):
    from service.store import Store

    with Store.open(tmp_path / "db.sqlite3") as store:
        screens = []
        ReviewSession(store, []).run(lambda: "q", screens.append)
    assert "queue is empty" in screens[-1]


def test_key_names():
    assert name_of(b"\x7f") == "backspace" and name_of(b"\x08") == "backspace" and name_of(b" ") == "space"
    assert name_of(b"\x1b[D") == "left" and name_of(b"") == "eof" and name_of("é".encode()) == "é"


# --- the real command in a pseudo-terminal ------------------------------------------------------------------------


@pytest.fixture
def queued_items(service_env, sandbox, cli, monkeypatch):
    """A data dir filled by a real poll of this test's sandbox, and its review queue (uncertain and audit items)."""
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_AUDIT_RATE", "0.3")
    cli("poll")
    items = json.loads(cli("review", "list", "--json", "--limit", "1000").stdout)
    assert len(items) >= 5
    return service_env, items


def spawn(tmp_path, **env_extra) -> pexpect.spawn:
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30", **env_extra)
    env.pop("KITTY_WINDOW_ID", None)
    env.pop("TERM_PROGRAM", None)
    env.pop("TMUX", None)
    return pexpect.spawn(sys.executable, ["-m", "service", "review"], env=env, dimensions=(30, 100),
                         encoding="utf-8", timeout=30)


def test_interactive_review_in_a_terminal(queued_items, tmp_path):
    data_dir, items = queued_items
    total = len(items)
    record = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(textwrap.dedent(f"""
        import sys
        with open({str(record)!r}, "a") as out:
            out.write(sys.argv[1] + "\\n")
    """))
    child = spawn(tmp_path, BROWSER=f"{sys.executable} {browser} %s")
    try:
        child.expect_exact("▀")  # the image, drawn with colour half-blocks, then the text under it
        child.expect_exact(f"[1/{total}]")
        child.expect_exact("why:")
        child.send("a")
        child.expect_exact(f"[2/{total}]")
        child.send("x")
        child.expect_exact(f"[3/{total}]")
        child.send("\x7f")  # backspace: undo, back to the second image
        child.expect_exact(f"[2/{total}]")
        child.expect_exact("answer taken back")
        child.send("2")
        child.expect_exact(f"[3/{total}]")
        child.send(" ")
        child.expect_exact(f"[4/{total}]")
        child.send("o")
        child.expect("opened (\\S+)")
        child.send("?")
        child.expect_exact("this help")
        child.send("n")
        child.expect_exact(f"[5/{total}]")
        child.send("q")  # quit mid-way
        child.expect_exact("labelled 3 (2 2D, 1 not 2D), skipped 1")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0

    conn = db(data_dir)
    ids = [item["image_id"] for item in items]
    labels = {row["image_id"]: row["label"] for row in conn.execute("SELECT * FROM labels WHERE superseded_by IS NULL")}
    assert labels == {ids[0]: "2d", ids[1]: "2d", ids[3]: "not2d"}
    assert conn.execute("SELECT count(*) FROM labels WHERE image_id = ?", (ids[1],)).fetchone()[0] == 1
    routes = {row["id"]: row["route"] for row in conn.execute("SELECT id, route FROM images")}
    assert (routes[ids[0]], routes[ids[1]], routes[ids[3]]) == ("feed", "feed", "dropped")
    media = conn.execute("SELECT status FROM media WHERE image_id = ?", (ids[3],)).fetchall()
    assert media and {m["status"] for m in media} == {"dropped"}
    still_open = {r[0] for r in conn.execute("SELECT image_id FROM review_queue WHERE resolved_at IS NULL")}
    assert ids[2] in still_open and not still_open & {ids[0], ids[1], ids[3]}
    opened = record.read_text().split()
    assert len(opened) == 1 and opened[0].startswith("file://") and opened[0].endswith(".jpg")


def test_answers_survive_a_killed_session(queued_items, tmp_path):
    data_dir, items = queued_items
    child = spawn(tmp_path)
    try:
        child.expect_exact(f"[1/{len(items)}]")
        child.send("x")
        child.expect_exact(f"[2/{len(items)}]")
        child.kill(signal.SIGKILL)
    finally:
        child.close(force=True)
    labels = db(data_dir).execute("SELECT image_id, label FROM labels").fetchall()
    assert [tuple(r) for r in labels] == [(items[0]["image_id"], "not2d")]


def test_review_without_a_terminal_points_to_the_scriptable_commands(trained, cli):
    result = cli("review", ok=False)
    assert result.exit_code == 2 and "review list" in result.output
