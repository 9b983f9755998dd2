"""The demo keeps living (issue 10, item 8): past its scripted timeline the sandbox goes on publishing generated
posts (its photos mirrored and cropped, under new ids and media keys, by other authors with other texts, the same
for the same seed), which the daemon classifies like any others; and `nijifeed demo` runs on the starter model."""

from __future__ import annotations

import json
import socket
from collections import Counter

import pytest
from pipelinekit import db, use

from service.sandbox import Sandbox
from service.sandbox.timeline_data import bundled_timeline


def generated(box: Sandbox, ids: list[str]) -> list[dict]:
    wanted = set(ids)
    return [post for post in reversed(box.posts()) if post["id"] in wanted]


def summary(posts: list[dict]) -> list[tuple]:
    """What a generated post is, without its ids and times."""
    return [(p["author"], p["kind"], [m["file"] for m in p["shown"]],
             [(m.transform.mirror, m.transform.crop) if m.transform else None for m in p["_media"]])
            for p in posts]


def test_the_sandbox_keeps_publishing_past_its_script(sandbox, http):
    scripted = sandbox.posts()
    assert sandbox.remaining == 0 and len(scripted) == 40
    ids = sandbox.publish(150)
    assert len(ids) == 150 and ids == sorted(ids, key=int) and int(ids[0]) > int(scripted[0]["id"])
    assert sandbox.remaining == 0 and len(sandbox.posts()) == 190
    new = generated(sandbox, ids)
    old_keys = {m["media_key"] for p in scripted for m in p["shown"]}
    new_keys = [m["media_key"] for p in new if p["kind"] != "retweet" for m in p["shown"]]
    assert len(new_keys) >= 100 and len(set(new_keys)) == len(new_keys) and not old_keys & set(new_keys)
    kinds = Counter(p["kind"] for p in new)
    assert kinds["post"] >= 120 and kinds["retweet"] >= 3
    assert sum(1 for p in new if not p["shown"]) >= 10  # some text-only posts
    scripted_authors = {u["username"] for u in bundled_timeline()["users"]}
    assert {p["author"] for p in new if p["kind"] == "post"}.isdisjoint(scripted_authors)
    assert len({p["author"] for p in new}) >= 6
    # every generated picture is new bytes (mirrored, cropped), of a sample file with its attribution
    photo = next(m for p in new for m in p["shown"])
    original = next(m for p in scripted for m in p["shown"] if m["file"] == photo["file"] and m["type"] == "photo")
    got = http.get(photo["url"], params={"format": "jpg", "name": "small"})
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content != http.get(original["url"], params={"format": "jpg", "name": "small"}).content
    texts = {post.text for post in sandbox.timeline.timeline[40:] if post.text}
    assert len(texts) >= 50
    # the API serves them like any others, with the expansions and the authors
    body = http.get(f"/2/users/{sandbox.me['id']}/timelines/reverse_chronological",
                    params={"since_id": scripted[0]["id"], "max_results": 100, "expansions":
                            "attachments.media_keys,author_id,referenced_tweets.id.attachments.media_keys",
                            "media.fields": "url,type", "user.fields": "username"}).json()
    assert len(body["data"]) == 100 and body["meta"]["next_token"]
    served = {m["media_key"] for m in body["includes"]["media"]}
    assert served <= set(new_keys)
    assert {u["username"] for u in body["includes"]["users"]} - scripted_authors


def test_generated_posts_are_the_same_for_the_same_seed():
    def run(seed: int) -> list[tuple]:
        with Sandbox(seed=seed) as box:
            ids = box.publish(40)
            posts = generated(box, ids)
            media = {m.media_key: m for t in box.timeline.timeline for m in t.media}
            for post in posts:
                post["_media"] = [media[m["media_key"]] for m in post["shown"]]
            return summary(posts)

    first = run(0)
    assert first == run(0)
    assert first != run(1)


def test_a_finite_sandbox_stops_at_the_end_of_its_script():
    with Sandbox(endless=False) as box:
        assert box.publish(5) == [] and len(box.posts()) == 40


def test_the_daemon_classifies_posts_far_past_the_script(service_env, cli, monkeypatch, no_proxy):
    monkeypatch.setenv("NIJIFEED_X_MAX_RESULTS", "100")
    with Sandbox() as box:
        use(monkeypatch, box)
        cli("poll")
        conn = db(service_env)
        images_before = conn.execute("SELECT count(*) FROM verdicts").fetchone()[0]
        ids = box.publish(60)
        result = cli("poll")
        assert "60 posts" in result.stdout
        new = generated(box, ids)
        keys = {m["media_key"] for p in new for m in p["shown"]}
        rows = conn.execute(
            f"SELECT media_key, status, image_id FROM media WHERE media_key IN ({','.join('?' * len(keys))})",
            sorted(keys),
        ).fetchall()
        assert {r["media_key"] for r in rows} == keys
        assert {r["status"] for r in rows} <= {"feed", "review", "dropped"}
        statuses = Counter(r["status"] for r in rows)
        assert statuses["feed"] and statuses["dropped"]
        # each generated picture is a new image, classified (not linked to the original's bytes)
        assert len({r["image_id"] for r in rows}) == len(keys)
        assert conn.execute("SELECT count(*) FROM verdicts").fetchone()[0] == images_before + len(keys)
        entries = json.loads(cli("feed", "--json", "--limit", "200").stdout)
        fed = [e for e in entries if e["post_id"] in set(ids)]
        assert fed and all(e["images"] for e in fed)  # new entries, each with its own new pictures


@pytest.mark.slow
def test_the_demo_runs_on_the_starter_and_past_its_script(cli, tmp_path, monkeypatch, no_proxy):
    with socket.socket() as probe:  # a free port (the demo falls back to any free one when it is taken)
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("NIJIFEED_WEB_PORT", str(probe.getsockname()[1]))
    result = cli("demo", "--cycles", "5", "--interval", "1", "--reveal", "20", "--publish", "12")
    assert "first start: the starter model" in result.stdout
    data_dir = tmp_path / "data" / "demo"
    conn = db(data_dir)
    models = conn.execute("SELECT metrics_json FROM models").fetchall()
    assert len(models) == 1 and json.loads(models[0][0])["starter"]
    assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] > 40  # past the 40 scripted posts
    statuses = Counter(row[0] for row in conn.execute("SELECT status FROM media"))
    assert statuses["feed"] and statuses["review"] and statuses["dropped"]
    again = cli("demo", "--cycles", "1", "--interval", "1")
    assert "first start" not in again.stdout  # the starter is trained once
