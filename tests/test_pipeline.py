"""The timeline pipeline end to end: the real tweepy and httpx clients against the X API sandbox on 127.0.0.1,
the real store, the model trained on the bundled samples."""

from __future__ import annotations

import json
import shutil
from collections import Counter

from pipelinekit import assert_routed_exactly_once, db, shown_keys, use
from xsandbox import BEARER_TOKEN

from service.sandbox import Sandbox

FINAL = {"feed", "review", "dropped", "skipped", "failed"}


def test_first_poll_pages_through_the_timeline_and_routes_every_image_once(service_env, sandbox, cli, monkeypatch):
    use(monkeypatch, sandbox)
    result = cli("poll")
    assert "posts" in result.stdout and "feed" in result.stdout
    conn = db(service_env)
    posts = sandbox.posts()
    assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == len(posts)
    poll = conn.execute("SELECT * FROM polls").fetchone()
    assert poll["pages"] >= len(posts) // 5 and poll["posts"] == len(posts) and poll["error"] is None
    media = {row["media_key"]: row for row in conn.execute("SELECT * FROM media")}
    assert set(media) == shown_keys(sandbox)
    assert {row["status"] for row in media.values()} <= FINAL
    statuses = Counter(row["status"] for row in media.values())
    assert statuses["feed"] and statuses["review"] and statuses["dropped"]  # the demo shows all three verdicts
    assert statuses["skipped"] >= 1  # the video's preview, classification of previews being off
    assert all("preview" in row["reason"] for row in media.values() if row["status"] == "skipped")
    assert_routed_exactly_once(conn)
    # the same bytes under two media keys are one image, classified once
    images = Counter(row["image_id"] for row in media.values() if row["image_id"] is not None)
    assert max(images.values()) >= 2
    assert conn.execute("SELECT value FROM kv WHERE key = 'since_id:x'").fetchone()[0] == posts[0]["id"]


def test_repeated_polls_read_only_new_posts(service_env, monkeypatch, cli, no_proxy):
    with Sandbox(reveal=12) as sandbox:
        use(monkeypatch, sandbox)
        cli("poll")
        first_newest = sandbox.posts()[0]["id"]
        sandbox.clear_requests()
        sandbox.publish(6)
        cli("poll")
        timeline = [r for r in sandbox.requests if r.endpoint == "timeline"]
        assert timeline and all(r.query.get("since_id") == first_newest for r in timeline)
        conn = db(service_env)
        polls = conn.execute("SELECT posts FROM polls ORDER BY id").fetchall()
        assert [p["posts"] for p in polls] == [12, 6]
        cli("poll")  # nothing new: one request, no posts
        assert conn.execute("SELECT posts FROM polls ORDER BY id DESC").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == 18
        assert_routed_exactly_once(conn)


def test_retweets_and_quotes_carry_the_original_media(service_env, sandbox, cli, monkeypatch):
    use(monkeypatch, sandbox)
    cli("poll")
    conn = db(service_env)
    shared = [p for p in sandbox.posts() if p["kind"] in ("retweet", "quote") and p["shown"]]
    assert {p["kind"] for p in shared} == {"retweet", "quote"}
    for post in shared:
        linked = {
            row[0]
            for row in conn.execute(
                "SELECT media.media_key FROM post_media JOIN media ON media.id = post_media.media_id"
                " WHERE post_media.post_id = ?",
                (post["id"],),
            )
        }
        assert linked == {m["media_key"] for m in post["shown"]}
        via = conn.execute("SELECT via FROM posts WHERE id = ?", (post["id"],)).fetchone()[0]
        assert via == post["kind"]


def test_api_faults_are_survived(service_env, sandbox, cli, monkeypatch):
    use(monkeypatch, sandbox)
    sandbox.inject("503", times=1)
    sandbox.inject("slow", times=1, target="timeline", seconds=3)  # beyond the 2 s timeout: retried
    sandbox.inject("partial_error", times=1)
    result = cli("poll")
    assert "API:" in result.output  # the partial error is reported, the data used
    conn = db(service_env)
    assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == len(sandbox.posts())
    assert_routed_exactly_once(conn)


def test_rate_limit_stops_the_poll_without_moving_the_cursor(service_env, cli, monkeypatch, no_proxy):
    with Sandbox(reveal=10) as sandbox:
        use(monkeypatch, sandbox)
        cli("poll")
        conn = db(service_env)
        cursor = conn.execute("SELECT value FROM kv WHERE key = 'since_id:x'").fetchone()[0]
        sandbox.publish(5)
        sandbox.inject("429", times=1, reset_in=120)
        result = cli("poll", ok=False)
        assert result.exit_code == 1
        assert "rate limit" in result.output.lower()
        assert conn.execute("SELECT value FROM kv WHERE key = 'since_id:x'").fetchone()[0] == cursor
        assert conn.execute("SELECT error FROM polls ORDER BY id DESC").fetchone()[0]
        cli("poll")
        assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == 15


def test_broken_image_is_recorded_as_failed_with_a_reason(service_env, sandbox, cli, monkeypatch):
    use(monkeypatch, sandbox)
    sandbox.inject("broken_image", times=2)
    cli("poll")
    conn = db(service_env)
    failed = conn.execute("SELECT media_key, reason FROM media WHERE status = 'failed'").fetchall()
    assert len(failed) == 2
    assert all("corrupt" in row["reason"] or "truncated" in row["reason"] for row in failed)
    shown = json.loads(cli("media", "show", failed[0]["media_key"]).stdout)
    assert shown["status"] == "failed" and shown["reason"] == failed[0]["reason"]
    assert shown["posts"], "the failed image still names the posts that carry it"


def test_without_a_model_images_wait_and_are_routed_after_training(
    samples, sandbox, cli, monkeypatch, tmp_path, no_proxy
):
    data_dir = tmp_path / "fresh"
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(data_dir))
    monkeypatch.setenv("NIJIFEED_STARTER_MODEL", "false")  # with it, the first poll is routed (test_starter.py)
    monkeypatch.setenv("NIJIFEED_X_BEARER_TOKEN", BEARER_TOKEN)
    use(monkeypatch, sandbox)
    assert "waiting for a model" in cli("poll").stdout
    conn = db(data_dir)
    assert conn.execute("SELECT count(*) FROM media WHERE status = 'downloaded'").fetchone()[0] > 0
    assert conn.execute("SELECT count(*) FROM verdicts").fetchone()[0] == 0
    cli("train", "--from-folders", samples / "train/not2d", samples / "train/2d", "--model", "lr")
    cli("poll")
    assert conn.execute("SELECT count(*) FROM media WHERE status IN ('downloaded', 'pending')").fetchone()[0] == 0
    assert_routed_exactly_once(conn)


def test_an_unrouted_image_whose_local_copy_is_gone_is_downloaded_again(
    samples, sandbox, cli, monkeypatch, tmp_path, no_proxy
):
    """Issue 9: a waiting image whose cached file disappeared was failed for good ("local copy missing")."""
    data_dir = tmp_path / "fresh"
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(data_dir))
    monkeypatch.setenv("NIJIFEED_STARTER_MODEL", "false")
    monkeypatch.setenv("NIJIFEED_X_BEARER_TOKEN", BEARER_TOKEN)
    use(monkeypatch, sandbox)
    cli("poll")  # no model yet: everything is downloaded and waits
    conn = db(data_dir)
    waiting = conn.execute("SELECT count(*) FROM media WHERE status = 'downloaded'").fetchone()[0]
    assert waiting > 0
    shutil.rmtree(data_dir / "cache" / "images")
    cli("train", "--from-folders", samples / "train/not2d", samples / "train/2d", "--model", "lr")
    cli("poll")
    assert conn.execute("SELECT count(*) FROM media WHERE status = 'failed'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM media WHERE status IN ('downloaded', 'pending')").fetchone()[0] == 0
    assert_routed_exactly_once(conn)
    assert all((data_dir / "cache" / "images" / sha[:2] / sha).is_file()
               for (sha,) in conn.execute("SELECT sha256 FROM images WHERE route IS NOT NULL"))


def test_audit_share_goes_to_review_marked_as_audit(service_env, sandbox, cli, monkeypatch):
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_AUDIT_RATE", "1.0")
    cli("poll")
    conn = db(service_env)
    confident = conn.execute("SELECT count(*) FROM verdicts WHERE verdict != 'uncertain'").fetchone()[0]
    audits = conn.execute("SELECT count(*) FROM review_queue WHERE reason = 'audit'").fetchone()[0]
    assert confident > 0 and audits == confident
    items = json.loads(cli("review", "list", "--json", "--limit", "500").stdout)
    assert {i["reason"] for i in items} == {"audit", "uncertain"}
    assert all(i["media_key"] for i in items)
    # most uncertain first
    margins = [i["margin"] for i in items if i["reason"] == "uncertain"]
    assert margins == sorted(margins)


def test_faces_show_what_happened_to_each_picture(service_env, sandbox, cli, monkeypatch):
    use(monkeypatch, sandbox)
    cli("poll")
    listed = json.loads(cli("media", "list", "--json", "--limit", "1000").stdout)
    assert {m["media_key"] for m in listed} == shown_keys(sandbox)
    skipped = json.loads(cli("media", "list", "--status", "skipped", "--json").stdout)
    assert skipped and all(m["status"] == "skipped" and m["reason"] for m in skipped)
    entries = json.loads(cli("feed", "--json").stdout)
    assert entries
    times = [e["created_at"] for e in entries]
    assert times == sorted(times, reverse=True)
    feed_keys = {m["media_key"] for m in listed if m["status"] == "feed"}
    for entry in entries:
        assert entry["images"] and all(image["media_key"] in feed_keys for image in entry["images"])
    assert len({e["post_id"] for e in entries}) == len(entries)
    status = json.loads(cli("status", "--json").stdout)
    assert status["reads_today"] >= len(sandbox.posts())
    assert status["active_model"] == 1
    assert status["review_queue"] == len(json.loads(cli("review", "list", "--json", "--limit", "1000").stdout))


def test_folder_source_picks_up_new_image_files(trained, samples, tmp_path, cli, monkeypatch):
    inbox = tmp_path / "drop"
    inbox.mkdir()
    monkeypatch.setenv("NIJIFEED_FOLDER_SETTLE", "0")
    first = sorted((samples / "inbox").glob("*.jpg"))
    for path in first[:5]:
        shutil.copy(path, inbox / path.name)
    cli("poll", "--source", f"folder:{inbox}")
    conn = db(trained)
    assert conn.execute("SELECT count(*) FROM media WHERE kind = 'file'").fetchone()[0] == 5
    for path in first[5:8]:
        shutil.copy(path, inbox / path.name)
    cli("poll", "--source", f"folder:{inbox}")
    assert conn.execute("SELECT count(*) FROM media WHERE kind = 'file'").fetchone()[0] == 8
    assert conn.execute("SELECT count(*) FROM polls ORDER BY id DESC").fetchone()[0] == 2
    assert conn.execute("SELECT posts FROM polls ORDER BY id DESC").fetchone()[0] == 3  # only the new files
    assert_routed_exactly_once(conn)


def test_bad_source_option_names_the_setting(trained, cli):
    result = cli("poll", "--source", "ftp://nope", ok=False)
    assert result.exit_code == 2 and "NIJIFEED_SOURCE" in result.output  # a bad setting: exit 2


def test_a_failed_fetch_still_processes_what_is_stored(samples, sandbox, cli, monkeypatch, tmp_path, no_proxy):
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("NIJIFEED_X_BEARER_TOKEN", BEARER_TOKEN)
    monkeypatch.setenv("NIJIFEED_STARTER_MODEL", "false")
    use(monkeypatch, sandbox)
    cli("poll")  # no model yet: images downloaded, waiting
    cli("train", "--from-folders", samples / "train/not2d", samples / "train/2d", "--model", "lr")
    sandbox.inject("429", times=1, reset_in=60)
    result = cli("poll", ok=False)
    assert result.exit_code == 1
    conn = db(tmp_path / "d")
    assert conn.execute("SELECT count(*) FROM media WHERE status IN ('downloaded', 'pending')").fetchone()[0] == 0
    assert_routed_exactly_once(conn)


def test_threshold_setting_overrides_the_model_rule_in_the_pipeline_too(service_env, sandbox, cli, monkeypatch):
    use(monkeypatch, sandbox)
    monkeypatch.setenv("NIJIFEED_THRESHOLD", "1.0")  # margin < 1.0 is unsure: everything goes to review
    cli("poll")
    conn = db(service_env)
    verdicts = {row[0] for row in conn.execute("SELECT verdict FROM verdicts")}
    assert verdicts == {"uncertain"}


def test_the_cycle_decodes_each_downloaded_image_once(service_env, sandbox, cli, monkeypatch):
    """Issue 8: the cycle decoded every download twice (once more only to read its size). Counts Pillow's opens
    made by the pipeline and the decoder (the sandbox, in this process too, opens its samples itself)."""
    import sys

    from PIL import Image

    real_open = Image.open
    opens: list[str] = []

    def counting_open(*args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith(("service.pipeline", "service.features")):
            opens.append(caller)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    use(monkeypatch, sandbox)
    cli("poll")
    conn = db(service_env)
    downloaded = conn.execute("SELECT count(*) FROM media WHERE image_id IS NOT NULL").fetchone()[0]
    assert downloaded > 10
    assert len(opens) == downloaded  # one decode per downloaded media row, none only for the size
