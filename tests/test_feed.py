"""Feed entries from a store filled by a real poll of the X API sandbox: one entry per piece of content, newest
first, only feed images with their figures; paging; the `feed` command's --limit and --since."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from service.errors import InputError
from service.feed import Cursor, entry_for_post, feed_entries, feed_page
from service.feed.times import parse_since
from service.sources import MediaRef, OriginalPost, Post
from service.store import Store


def open_store(data_dir) -> Store:
    return Store.open(data_dir / "nijifeed.sqlite3")


def feed_keys(store: Store) -> set[str]:
    return {r["media_key"] for r in store.conn.execute("SELECT media_key FROM media WHERE status = 'feed'")}


def test_entries_are_newest_first_with_only_feed_images_and_their_figures(polled, feed_sandbox, cli):
    entries = json.loads(cli("feed", "--json", "--limit", "1000").stdout)
    assert len(entries) >= 5
    times = [e["created_at"] for e in entries]
    assert times == sorted(times, reverse=True)
    assert len({e["id"] for e in entries}) == len(entries)
    with open_store(polled) as store:
        in_feed = {r[0] for r in store.conn.execute("SELECT sha256 FROM images WHERE route = 'feed'")}
        assert feed_keys(store) >= {image["media_key"] for e in entries for image in e["images"]}
    shown = [image["sha256"] for e in entries for image in e["images"]]
    assert sorted(shown) == sorted(in_feed)  # every feed image is in one entry, once, and nothing else is
    for entry in entries:
        assert entry["url"].startswith("https://x.com/") and entry["author_handle"]
        for image in entry["images"]:
            assert 0.0 <= image["p_2d"] <= 1.0 and image["model_version"] == 1 and image["routed_by"] == "model"
            assert len(image["sha256"]) == 64
    # A retweet is shown as its original: the original's id, author and text, the retweeter in reposted_by.
    posts = {p["id"]: p for p in feed_sandbox.posts()}
    retweeted = [e for e in entries if e["via"] == "retweet"]
    assert retweeted, "the sandbox timeline retweets a 2D post"
    for entry in retweeted:
        retweet = posts[entry["post_id"]]
        assert retweet["kind"] == "retweet" and entry["id"] == retweet["ref_id"]
        assert entry["author_handle"] == retweet["ref_author"] and entry["reposted_by"] == [retweet["author"]]
        assert not entry["text"].startswith("RT @")


def test_an_image_is_shown_once_under_the_first_post_that_carried_it(polled, feed_sandbox, cli):
    """Issue 9: a quote of a post already in the feed listed the quoted image a second time."""
    entries = json.loads(cli("feed", "--json", "--limit", "1000").stdout)
    shown = Counter(image["sha256"] for e in entries for image in e["images"])
    assert shown and max(shown.values()) == 1
    echoed = [e for e in entries if e["echoes"]]
    assert echoed, "the sandbox quotes a post whose picture is in the feed"
    posts = {p["id"]: p for p in feed_sandbox.posts()}
    for entry in echoed:  # the sandbox posts the same picture again later: the later post is an echo
        for echo in entry["echoes"]:
            later = posts[echo["post_id"]]
            assert echo["post_id"] not in (entry["id"], entry["post_id"]) and echo["author_handle"] == later["author"]
            assert echo["via"] == {"post": None, "quote": "quote"}[later["kind"]]
    with open_store(polled) as store:  # and a quote of a feed post, arriving later, adds no second copy
        before = feed_entries(store, limit=1000)
        quoted = next(e for e in before if e.via is None)
        refs = tuple(MediaRef(i.media_key, "photo", i.url) for i in quoted.images)
        store.add_posts([Post(id="9200000000000000001", text="look at this!", created_at="2030-01-01T00:00:00.000Z",
                              url="https://x.com/curator/status/9200000000000000001", author_handle="curator",
                              media=refs, via="quote", via_id=quoted.id)])
        after = feed_entries(store, limit=1000)
        assert [e.id for e in after] == [e.id for e in before]
        assert Counter(i.sha256 for e in after for i in e.images) == Counter(i.sha256 for e in before for i in e.images)
        echoes = next(e for e in after if e.id == quoted.id).echoes
        assert [(x.post_id, x.via, x.author_handle) for x in echoes][-1] == ("9200000000000000001", "quote", "curator")
        assert entry_for_post(store, "9200000000000000001") is None  # no entry of its own: nothing to forward
        assert "quoted by @curator" in next(e for e in after if e.id == quoted.id).echo_line()
    page = cli("feed").stdout
    assert "quoted by @curator" in page  # the reader sees who else carried it


def test_a_post_that_reappears_is_one_entry(polled):
    with open_store(polled) as store:
        before = feed_entries(store, limit=1000)
        entry = next(e for e in before if e.via == "retweet")
        refs = tuple(MediaRef(i.media_key, "photo", i.url) for i in entry.images)
        original = OriginalPost(id=entry.id, text="the original", url=entry.url, author_name="Far Away",
                                author_handle="faraway_artist")
        # Retweeted again, later, by another account; and the original itself appears too, earlier.
        store.add_posts([
            Post(id="9100000000000000001", text=f"RT @{entry.author_handle}: ...", created_at="2030-01-01T00:00:00.000Z",
                 url=entry.url, author_handle="second_fan", author_name="Fan", media=refs, via="retweet",
                 via_id=entry.id, original=original),
            Post(id=entry.id, text="the original", created_at="2000-01-01T00:00:00.000Z", url=entry.url,
                 author_handle="faraway_artist", author_name="Far Away", media=refs),
        ])
        after = feed_entries(store, limit=1000)
        assert len(after) == len(before)
        merged = next(e for e in after if e.id == entry.id)
        assert merged.created_at == "2000-01-01T00:00:00.000Z"  # when it first appeared: the entry does not move up
        assert merged.via is None and merged.text == "the original" and merged.author_handle == "faraway_artist"
        assert merged.reposted_by == [*entry.reposted_by, "second_fan"]
        assert [i.sha256 for i in merged.images] == [i.sha256 for i in entry.images]  # each image once
        assert entry_for_post(store, "9100000000000000001").id == entry.id


def test_an_image_labelled_2d_joins_the_feed_marked_as_such(polled):
    with open_store(polled) as store:
        before = {e.id for e in feed_entries(store, limit=1000)}
        row = store.conn.execute(
            "SELECT i.id, p.id AS post_id FROM images i JOIN media m ON m.image_id = i.id"
            " JOIN post_media pm ON pm.media_id = m.id JOIN posts p ON p.id = pm.post_id"
            " WHERE i.route = 'review' AND p.via IS NULL AND p.id NOT IN (SELECT pm2.post_id FROM post_media pm2"
            " JOIN media m2 ON m2.id = pm2.media_id WHERE m2.status = 'feed') LIMIT 1"
        ).fetchone()
        with store.transaction() as conn:  # what a review label does to the routes
            conn.execute("UPDATE images SET route = 'feed', routed_by = 'label', routed_at = '2030-01-01T00:00:00.000+00:00'"
                         " WHERE id = ?", (row["id"],))
            conn.execute("UPDATE media SET status = 'feed' WHERE image_id = ?", (row["id"],))
        entries = {e.id: e for e in feed_entries(store, limit=1000)}
        assert set(entries) == before | {row["post_id"]}
        labelled = entries[row["post_id"]]
        assert [i.routed_by for i in labelled.images] == ["label"]
        assert labelled.images[0].model_version == 1  # the model that had sent it to review
        assert labelled.entered_at.startswith("2030-01-01")


def test_cursor_paging_visits_every_entry_once(polled):
    with open_store(polled) as store:
        everything = [e.id for e in feed_entries(store, limit=1000)]
        seen, cursor = [], None
        while True:
            page = feed_page(store, limit=3, before=cursor)
            seen += [e.id for e in page.entries]
            if page.next is None:
                break
            cursor = Cursor.decode(page.next.encode())
        assert seen == everything
    with pytest.raises(InputError, match="not a feed cursor"):
        Cursor.decode("not-a-cursor")


def test_feed_command_limit_and_since(polled, cli):
    everything = json.loads(cli("feed", "--json", "--limit", "1000").stdout)
    assert len(json.loads(cli("feed", "--json", "--limit", "2").stdout)) == 2
    middle = everything[len(everything) // 2]["created_at"]
    since = json.loads(cli("feed", "--json", "--limit", "1000", "--since", middle).stdout)
    assert since == [e for e in everything if e["created_at"] >= middle[:23]]
    assert len(json.loads(cli("feed", "--json", "--limit", "1000", "--since", "4w").stdout)) == len(everything)
    assert "the feed is empty" in cli("feed", "--since", "2999-01-01").stdout
    text = cli("feed", "--limit", "1").stdout
    assert everything[0]["url"] in text and "p(2D)=" in text and "model v1" in text
    bad = cli("feed", "--since", "last tuesday", ok=False)
    assert bad.exit_code == 1 and "not a time" in bad.output
    assert cli("feed", "--limit", "0", ok=False).exit_code == 2


def test_since_accepts_iso_times_and_durations():
    now = datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
    assert parse_since("2026-05-09") == "2026-05-09T00:00:00.000"
    assert parse_since("2026-05-09T07:30+02:00") == "2026-05-09T05:30:00.000"
    assert parse_since("2026-05-09T07:30:00.250Z") == "2026-05-09T07:30:00.250"
    assert parse_since("6h", now=now) == "2026-05-09T06:00:00.000"
    assert parse_since("2d", now=now) == "2026-05-07T12:00:00.000"
    with pytest.raises(InputError, match="not a time"):
        parse_since("yesterday")
