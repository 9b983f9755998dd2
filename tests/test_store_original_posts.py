"""A retweet's or quote's original post in the store's columns: written by ``add_posts``, and backfilled from the
``raw_json`` that schema versions 1 to 3 wrote, so an old database keeps its originals in the feed."""

from __future__ import annotations

import json
from pathlib import Path

from service.feed import feed_entries
from service.sources import MediaRef, OriginalPost, Post
from service.store import MIGRATIONS, Store, connect, migrate

ORIGINAL_COLUMNS = ("original_id", "original_text", "original_url", "original_created_at", "original_author_id",
                    "original_author_name", "original_author_handle", "original_author_avatar")
SHA = "ab" * 32

#: What the parser of schema versions 1-3 kept in raw_json for a retweet.
OLD_RETWEET_RAW = {
    "tweet": {"id": "300", "text": "RT @faraway_artist: …", "referenced_tweets": [{"type": "retweeted", "id": "100"}]},
    "original": {"id": "100", "kind": "retweet", "text": "the original", "url": "https://x.com/faraway_artist/status/100",
                 "created_at": "2026-05-01T10:00:00.000Z", "author_id": "2", "author_name": "Far Away",
                 "author_handle": "faraway_artist", "author_avatar": "https://pbs.example/f.jpg"},
}


def originals(store: Store) -> dict[str, tuple]:
    rows = store.conn.execute(f"SELECT id, {', '.join(ORIGINAL_COLUMNS)} FROM posts ORDER BY id")
    return {row["id"]: tuple(row[c] for c in ORIGINAL_COLUMNS) for row in rows}


def test_an_old_database_gets_its_originals_in_columns(tmp_path: Path):
    path = tmp_path / "nijifeed.sqlite3"
    conn = connect(path)
    try:
        assert migrate(conn, MIGRATIONS[:3]) == 3  # the schema before the original got its columns
        posts = [
            ("300", "retweet", "100", json.dumps(OLD_RETWEET_RAW)),
            ("301", "quote", "101", json.dumps({"tweet": {"id": "301"}, "original": {"id": 101, "text": "quoted"}})),
            ("302", None, None, json.dumps({"tweet": {"id": "302"}})),  # a plain post
            ("303", None, None, "{not json"),  # nothing a backfill should trip over
            ("304", None, None, None),
            ("305", None, None, json.dumps({"path": "/pictures/a.png"})),  # a folder source's raw
        ]
        with conn:
            conn.executemany(
                "INSERT INTO posts (id, author_handle, text, created_at, url, via, via_id, raw_json, fetched_at)"
                " VALUES (?, 'niji_curator', 'RT @faraway_artist: …', '2026-05-03T08:00:00.000Z',"
                " 'https://x.com/faraway_artist/status/100', ?, ?, ?, '2026-05-03T08:01:00.000+00:00')",
                posts,
            )
            # the retweet's picture is in the feed
            conn.execute("INSERT INTO images (id, sha256, first_seen, route, routed_by, routed_at) VALUES"
                         " (1, ?, '2026-05-03T08:01:00+00:00', 'feed', 'model', '2026-05-03T08:02:00+00:00')", (SHA,))
            conn.execute("INSERT INTO media (id, media_key, kind, url, image_id, status)"
                         " VALUES (1, '3_art', 'photo', 'https://pbs.example/art.jpg', 1, 'feed')")
            conn.execute("INSERT INTO post_media (post_id, media_id, position) VALUES ('300', 1, 0)")
    finally:
        conn.close()

    with Store.open(path) as store:
        assert store.conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
        found = originals(store)
        assert found["300"] == ("100", "the original", "https://x.com/faraway_artist/status/100",
                                "2026-05-01T10:00:00.000Z", "2", "Far Away", "faraway_artist",
                                "https://pbs.example/f.jpg")
        assert found["301"] == ("101", "quoted", None, None, None, None, None, None)  # a number id becomes text
        for plain in ("302", "303", "304", "305"):
            assert found[plain] == (None,) * len(ORIGINAL_COLUMNS), plain
        assert store.conn.execute("SELECT raw_json FROM posts WHERE id = '300'").fetchone()[0] == json.dumps(
            OLD_RETWEET_RAW)  # the API's answer is left as it was
        (entry,) = feed_entries(store)
        assert entry.id == "100" and entry.via == "retweet" and entry.reposted_by == ["niji_curator"]
        assert (entry.text, entry.author_name, entry.author_handle, entry.author_avatar) == (
            "the original", "Far Away", "faraway_artist", "https://pbs.example/f.jpg")


def test_add_posts_writes_the_original_in_columns(tmp_path: Path):
    original = OriginalPost(id="100", text="the original", url="https://x.com/faraway_artist/status/100",
                            created_at="2026-05-01T10:00:00.000Z", author_id="2", author_name="Far Away",
                            author_handle="faraway_artist", author_avatar="https://pbs.example/f.jpg")
    retweet = Post(id="300", text="RT @faraway_artist: the original", created_at="2026-05-03T08:00:00.000Z",
                   url=original.url, author_handle="niji_curator", via="retweet", via_id="100", original=original,
                   media=(MediaRef("3_art", "photo", "https://pbs.example/art.jpg"),), raw={"tweet": {"id": "300"}})
    plain = Post(id="302", text="hello", created_at=None, url="https://x.com/niji_curator/status/302")
    with Store.open(tmp_path / "nijifeed.sqlite3") as store:
        store.add_posts([retweet, plain])
        found = originals(store)
        assert found["300"] == ("100", "the original", "https://x.com/faraway_artist/status/100",
                                "2026-05-01T10:00:00.000Z", "2", "Far Away", "faraway_artist",
                                "https://pbs.example/f.jpg")
        assert found["302"] == (None,) * len(ORIGINAL_COLUMNS)
        raw = store.conn.execute("SELECT raw_json FROM posts WHERE id = '300'").fetchone()[0]
        assert json.loads(raw) == {"tweet": {"id": "300"}}  # the source's own record, nothing derived
