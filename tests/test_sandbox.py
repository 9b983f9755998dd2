"""The X API v2 sandbox: answer shapes, parameters, pagination, live reveal, media variants, faults."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time

import httpx
import pytest
from PIL import Image
from xsandbox import BEARER_TOKEN, FULL_QUERY

from service.sandbox import Sandbox, snowflake, snowflake_ms
from service.sandbox.build_timeline import build
from service.sandbox.timeline_data import bundled_timeline

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def home(http, sandbox, **params):
    return http.get(f"/2/users/{sandbox.me['id']}/timelines/reverse_chronological", params=params)


def image_of(response) -> Image.Image:
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


# --- the bundled data ----------------------------------------------------------------------------------------------


def test_bundled_timeline_uses_every_sample_with_attribution(samples):
    data = bundled_timeline()
    assert data == json.loads(json.dumps(build())), "timeline.json is stale: run python -m service.sandbox.build_timeline"
    # every sample but the starter set (service/samples/starter, which the starter model is trained on)
    files = {str(p.relative_to(samples)) for p in samples.rglob("*.jpg") if p.relative_to(samples).parts[0] != "starter"}
    photos = {m["file"] for t in data["tweets"] for m in t["media"] if m["type"] == "photo"}
    assert photos == files
    for tweet in data["tweets"]:
        for media in tweet["media"]:
            assert media["attribution"]["license"] and media["attribution"]["source_package"]
    kinds = {t.get("ref", {}).get("type") for t in data["tweets"]}
    assert {"retweeted", "quoted", "replied_to", None} <= kinds
    assert {m["type"] for t in data["tweets"] for m in t["media"]} == {"photo", "video", "animated_gif"}


# --- answer shapes -----------------------------------------------------------------------------------------------


def test_users_me_and_auth_required(sandbox, http):
    me = http.get("/2/users/me", params={"user.fields": "profile_image_url,created_at"})
    assert me.status_code == 200
    data = me.json()["data"]
    assert data["id"] == sandbox.me["id"] and isinstance(data["id"], str)
    assert data["profile_image_url"].startswith(sandbox.url) and ISO_MS.match(data["created_at"])
    for headers in ({}, {"Authorization": "Basic abc"}):
        refused = httpx.get(f"{sandbox.url}/2/users/me", headers=headers, trust_env=False)
        assert refused.status_code == 401
        assert refused.json() == {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
    # an app-only bearer token cannot read user context endpoints
    app_only = httpx.get(f"{sandbox.url}/2/users/me", headers={"Authorization": "Bearer " + "A" * 22 + "xyz"},
                         trust_env=False)
    assert app_only.status_code == 403 and "unsupported-authentication" in app_only.json()["type"]


def test_timeline_shapes(sandbox, http):
    answer = home(http, sandbox, max_results=100, **FULL_QUERY)
    assert answer.status_code == 200
    for name in ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"):
        assert answer.headers[name].isdigit()
    assert answer.headers["x-rate-limit-limit"] == "180"
    assert int(answer.headers["x-rate-limit-reset"]) > time.time()
    body = answer.json()
    data, includes, meta = body["data"], body["includes"], body["meta"]
    assert "errors" not in body
    ids = [t["id"] for t in data]
    assert all(isinstance(i, str) and i.isdigit() for i in ids)
    assert ids == sorted(ids, key=int, reverse=True)
    assert meta["result_count"] == len(data) == len(sandbox.posts())
    assert meta["newest_id"] == ids[0] and meta["oldest_id"] == ids[-1]
    assert "next_token" not in meta
    now_ms = time.time() * 1000
    for tweet in data:
        assert ISO_MS.match(tweet["created_at"])
        assert tweet["edit_history_tweet_ids"] == [tweet["id"]]
        assert 0 <= now_ms - snowflake_ms(tweet["id"]) < 7 * 86_400_000
    assert "&amp;" in next(t["text"] for t in data if "tabs" in t["text"])
    media = {m["media_key"]: m for m in includes["media"]}
    users = {u["id"] for u in includes["users"]}
    referenced = {t["id"]: t for t in includes["tweets"]}
    for tweet in data:
        assert tweet["author_id"] in users
        for key in tweet.get("attachments", {}).get("media_keys", []):
            assert key in media
        for ref in tweet.get("referenced_tweets", []):
            assert ref["id"] in referenced or ref["id"] in ids
    for tweet in referenced.values():
        assert tweet["author_id"] in users
    retweets = [t for t in data if t["text"].startswith("RT @")]
    assert retweets and all("attachments" not in t for t in retweets)
    for item in media.values():
        assert item["media_key"].split("_")[0] in ("3", "7", "16")
        if item["type"] == "photo":
            assert item["url"].startswith(f"{sandbox.url}/media/") and "preview_image_url" not in item
        else:
            assert "url" not in item and item["preview_image_url"].startswith(sandbox.url)
        assert item["width"] > 0 and item["height"] > 0


def test_fields_and_expansions_are_honoured(sandbox, http):
    bare = home(http, sandbox).json()
    assert set(bare) == {"data", "meta"}
    assert all(set(t) == {"id", "text", "edit_history_tweet_ids"} for t in bare["data"])
    # without the referenced-tweets media expansion, retweeted media are absent
    own_only = home(http, sandbox, expansions="attachments.media_keys,referenced_tweets.id").json()
    with_refs = home(http, sandbox, expansions="attachments.media_keys,referenced_tweets.id,"
                     "referenced_tweets.id.attachments.media_keys", **{"media.fields": "url"}).json()
    truth = sandbox.posts()
    retweeted_keys = {m["media_key"] for p in truth if p["kind"] == "retweet" for m in p["shown"]}
    far_only = retweeted_keys - {k for p in truth for k in p["media_keys"]}
    assert far_only
    assert not far_only & {m["media_key"] for m in own_only["includes"]["media"]}
    assert far_only <= {m["media_key"] for m in with_refs["includes"]["media"]}
    assert "attachments" in next(t for t in with_refs["includes"]["tweets"] if t["id"] in
                                 {p["ref_id"] for p in truth if p["kind"] == "retweet"})
    assert all(set(m) == {"media_key", "type"} for m in own_only["includes"]["media"])


@pytest.mark.parametrize("value, ok", [("4", False), ("5", True), ("100", True), ("101", False), ("x", False)])
def test_max_results_bounds(sandbox, http, value, ok):
    answer = home(http, sandbox, max_results=value)
    assert (answer.status_code == 200) is ok
    if not ok:
        body = answer.json()
        assert answer.status_code == 400 and body["title"] == "Invalid Request"
        assert body["errors"][0]["parameters"] == {"max_results": [value]}
        assert "between 5 and 100" in body["errors"][0]["message"]


def test_bad_parameters_are_400(sandbox, http):
    assert home(http, sandbox, **{"tweet.fields": "created_at,bogus"}).status_code == 400
    assert home(http, sandbox, expansions="nope").status_code == 400
    assert home(http, sandbox, since_id="abc").status_code == 400
    assert home(http, sandbox, pagination_token="garbage-token").status_code == 400
    assert home(http, sandbox, foo="1").json()["errors"][0]["message"].startswith("The query parameter [foo]")
    other = http.get("/2/users/12345/timelines/reverse_chronological")
    assert other.status_code == 403


@pytest.mark.parametrize("sandbox", [{"reveal": 12}], indirect=True)
def test_pagination_since_until_and_trailing_token(sandbox, http):
    ids = [p["id"] for p in sandbox.posts()]
    assert len(ids) == 12
    seen, token, pages = [], None, 0
    while True:
        params = {"max_results": 5, **({"pagination_token": token} if token else {})}
        meta = (body := home(http, sandbox, **params).json())["meta"]
        seen += [t["id"] for t in body.get("data", [])]
        pages += 1
        token = meta.get("next_token")
        if not token:
            break
    assert seen == ids and pages == 3
    # a full last page still carries next_token (the API does this); the page after it is empty
    body = home(http, sandbox, max_results=6, since_id=ids[7]).json()  # 7 newer posts: 6 + 1
    assert [t["id"] for t in body["data"]] == ids[:6]
    body = home(http, sandbox, max_results=6, pagination_token=body["meta"]["next_token"], since_id=ids[7]).json()
    assert [t["id"] for t in body["data"]] == ids[6:7] and "next_token" not in body["meta"]
    full = home(http, sandbox, max_results=5, since_id=ids[5]).json()  # exactly 5 newer
    assert full["meta"]["result_count"] == 5 and "next_token" in full["meta"]
    empty = home(http, sandbox, max_results=5, since_id=ids[5], pagination_token=full["meta"]["next_token"]).json()
    assert empty == {"meta": {"result_count": 0}}
    # since_id is exclusive, until_id too
    body = home(http, sandbox, since_id=ids[3], until_id=ids[0]).json()
    assert [t["id"] for t in body["data"]] == ids[1:3]
    assert home(http, sandbox, since_id=ids[0]).json() == {"meta": {"result_count": 0}}


@pytest.mark.parametrize("sandbox", [{"reveal": 3}], indirect=True)
def test_publish_reveals_new_posts_live(sandbox, http):
    before = sandbox.posts()
    new = sandbox.publish(2)
    answer = http.post("/_sandbox/publish", params={"count": 1}).json()
    assert len(answer["published"]) == 1
    new += answer["published"]
    assert int(new[0]) > int(before[0]["id"]) and new == sorted(new, key=int)
    body = home(http, sandbox, since_id=before[0]["id"]).json()
    assert [t["id"] for t in body["data"]] == list(reversed(new))
    assert abs(snowflake_ms(new[-1]) - time.time() * 1000) < 5000
    assert sandbox.remaining == 40 - 6


def test_window_and_cap():
    now = [time.time()]
    with Sandbox(cap=10, clock=lambda: now[0]) as sb:
        assert len(sb.posts()) == 10
    with Sandbox(clock=lambda: now[0]) as sb:
        total = len(sb.posts())
        now[0] += 7 * 86400 - 3600  # an hour short of a week: the oldest revealed posts fall out of the window
        assert 0 < len(sb.posts()) < total
    assert snowflake_ms(snowflake(1_700_000_000_123)) == 1_700_000_000_123


def test_rate_limit_counts_and_429(sandbox, http):
    first = home(http, sandbox, max_results=5)
    second = home(http, sandbox, max_results=5)
    assert int(second.headers["x-rate-limit-remaining"]) == int(first.headers["x-rate-limit-remaining"]) - 1
    sandbox.inject("429", reset_in=42)
    before = time.time()
    limited = home(http, sandbox, max_results=5)
    after = time.time()
    assert limited.status_code == 429 and limited.json()["title"] == "Too Many Requests"
    assert limited.headers["x-rate-limit-remaining"] == "0"
    assert int(before) + 42 <= int(limited.headers["x-rate-limit-reset"]) <= after + 42  # 42 s from now
    assert home(http, sandbox, max_results=5).status_code == 200  # times=1


def test_error_faults(sandbox, http):
    sandbox.inject("503", times=2)
    assert [home(http, sandbox).status_code for _ in range(3)] == [503, 503, 200]
    sandbox.inject("403")
    forbidden = http.get("/2/users/me")
    body = forbidden.json()
    assert forbidden.status_code == 403 and body["reason"] == "client-not-enrolled" and body["title"] == "Client Forbidden"
    sandbox.inject("401", target="timeline")
    assert http.get("/2/users/me").status_code == 200
    assert home(http, sandbox).status_code == 401
    sandbox.inject("slow", seconds=0.3)
    started = time.monotonic()
    assert home(http, sandbox, max_results=5).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert [r.fault for r in sandbox.requests if r.fault] == ["503", "503", "403", "401", "slow"]
    with pytest.raises(ValueError):
        sandbox.inject("teapot")


def test_partial_error_keeps_data(sandbox, http):
    sandbox.inject("partial_error")
    body = home(http, sandbox, **FULL_QUERY).json()
    assert len(body["data"]) == len(sandbox.posts())
    (error,) = body["errors"]
    assert error["title"] == "Not Found Error" and error["resource_type"] == "tweet"
    assert error["type"] == "https://api.twitter.com/2/problems/resource-not-found"
    assert error["resource_id"] not in {t["id"] for t in body["includes"]["tweets"]}
    assert "errors" not in home(http, sandbox, **FULL_QUERY).json()


def test_http_control_endpoints(sandbox, http):
    assert http.post("/_sandbox/faults", json={"kind": "502", "times": 1}).status_code == 201
    assert len(http.get("/_sandbox/faults").json()["faults"]) == 1
    assert home(http, sandbox).status_code == 502
    assert http.get("/_sandbox/faults").json()["faults"] == []
    state = http.get("/_sandbox/state").json()
    assert state["me"] == sandbox.me and state["visible"] == 40 and state["remaining"] == 0
    assert http.post("/_sandbox/faults", json={"kind": "bogus"}).status_code == 400
    logged = http.get("/_sandbox/requests").json()["requests"]
    assert [r["status"] for r in logged] == [502] and logged[0]["auth"] == "Bearer"
    assert len(http.get("/_sandbox/attribution").json()["images"]) == 53


def test_request_log_has_no_secrets(sandbox, http):
    home(http, sandbox, max_results=5)
    (record,) = sandbox.requests
    assert record.auth == "Bearer" and record.query == {"max_results": "5"}
    assert "Authorization" not in record.headers and BEARER_TOKEN not in repr(record)


# --- media -------------------------------------------------------------------------------------------------------


def _photo(sandbox, http):
    body = home(http, sandbox, **FULL_QUERY).json()
    return next(m for m in body["includes"]["media"] if m["type"] == "photo" and max(m["width"], m["height"]) > 1300)


@pytest.mark.parametrize("name, box", [("small", 680), ("medium", 1200), ("large", 2048), ("900x900", 900),
                                       ("360x360", 360)])
def test_media_size_variants(sandbox, http, name, box):
    photo = _photo(sandbox, http)
    stem = photo["url"].removesuffix(".jpg")
    answer = http.get(stem, params={"format": "jpg", "name": name})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    image = image_of(answer)
    assert image.format == "JPEG"
    assert max(image.size) == min(box, max(photo["width"], photo["height"]))
    ratio = photo["width"] / photo["height"]
    assert abs(image.size[0] / image.size[1] - ratio) < 0.02


def test_media_orig_thumb_formats_and_errors(sandbox, http):
    photo = _photo(sandbox, http)
    stem = photo["url"].removesuffix(".jpg")
    assert image_of(http.get(photo["url"], params={"name": "orig"})).size == (photo["width"], photo["height"])
    assert image_of(http.get(stem, params={"format": "jpg", "name": "thumb"})).size == (150, 150)
    assert max(image_of(http.get(photo["url"] + ":small")).size) == 680  # the legacy form
    png = image_of(http.get(stem, params={"format": "png", "name": "small"}))
    assert png.format == "PNG"
    assert http.get(stem, params={"format": "jpg", "name": "huge"}).status_code == 400
    assert http.get(f"{sandbox.url}/media/NoSuchMedia.jpg").status_code == 404
    video = next(m for m in home(http, sandbox, **FULL_QUERY).json()["includes"]["media"] if m["type"] == "video")
    assert "/ext_tw_video_thumb/" in video["preview_image_url"]
    assert image_of(http.get(video["preview_image_url"], params={"name": "small"})).size[0] > 0
    user = http.get("/2/users/me", params={"user.fields": "profile_image_url"}).json()["data"]
    assert image_of(http.get(user["profile_image_url"])).size == (48, 48)


@pytest.mark.parametrize("mode", ["truncated", "garbage"])
def test_broken_image_fault(sandbox, http, mode):
    photo = _photo(sandbox, http)
    url = photo["url"].removesuffix(".jpg") + "?format=jpg&name=small"
    good = http.get(url).content
    sandbox.inject("broken_image", mode=mode)
    broken = http.get(url)
    assert broken.status_code == 200 and broken.content != good
    with pytest.raises(OSError):
        image_of(broken)
    assert http.get(url).content == good


def test_same_bytes_under_another_media_key(sandbox, http):
    truth = sandbox.posts()
    by_file: dict[str, set[str]] = {}
    for post in truth:
        for media in post["shown"]:
            if media["type"] == "photo" and post["kind"] != "retweet":
                by_file.setdefault(media["file"], set()).add(media["url"])
    twice = [urls for urls in by_file.values() if len(urls) > 1]
    assert twice
    contents = {http.get(url, params={"name": "small"}).content for url in twice[0]}
    assert len(contents) == 1


def test_module_runs_standalone(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "service.sandbox", "--port", "0", "--reveal", "5"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)  # type: ignore[union-attr]
        answer = httpx.post(f"{url}/_sandbox/publish", params={"count": 2}, trust_env=False)
        assert len(answer.json()["published"]) == 2
    finally:
        process.terminate()
        process.wait(timeout=10)
