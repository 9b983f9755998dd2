"""The X answer parser as pure functions on JSON dicts: no HTTP, no client."""

from __future__ import annotations

import logging

from service.sources import MediaRef, OriginalPost
from service.sources.x_parse import QUERY, describe_error, media_refs, parse_page, post_text, status_url

USERS = [
    {"id": "1", "name": "Curator", "username": "niji_curator", "profile_image_url": "https://pbs.example/c.jpg"},
    {"id": "2", "name": "Far Away", "username": "faraway_artist", "profile_image_url": "https://pbs.example/f.jpg"},
]
MEDIA = [
    {"media_key": "3_own", "type": "photo", "url": "https://pbs.example/own.jpg", "width": 800, "height": 600,
     "alt_text": "a fox"},
    {"media_key": "3_art", "type": "photo", "url": "https://pbs.example/art.jpg", "width": 1200, "height": 900},
    {"media_key": "7_vid", "type": "video", "preview_image_url": "https://pbs.example/thumb.jpg"},
    {"media_key": "16_gif", "type": "animated_gif", "preview_image_url": "https://pbs.example/gif.jpg"},
    {"media_key": "9_odd", "type": "hologram"},
]
ART = {"id": "100", "text": "new piece &amp; more https://t.co/art", "author_id": "2",
       "created_at": "2026-05-01T10:00:00.000Z", "attachments": {"media_keys": ["3_art"]},
       "entities": {"urls": [{"url": "https://t.co/art", "media_key": "3_art"}]}}


def answer(*tweets: dict, referenced: tuple[dict, ...] = (ART,), **extra) -> dict:
    return {"data": list(tweets), "includes": {"users": USERS, "media": MEDIA, "tweets": list(referenced)},
            "meta": {"newest_id": tweets[0]["id"] if tweets else None, "result_count": len(tweets)}, **extra}


def test_a_plain_post_with_its_photo():
    tweet = {"id": "200", "text": "look &lt;3 https://t.co/own", "author_id": "1",
             "created_at": "2026-05-02T09:00:00.000Z", "attachments": {"media_keys": ["3_own"]},
             "entities": {"urls": [{"url": "https://t.co/own", "media_key": "3_own"}]}}
    page = parse_page(answer(tweet, referenced=()))
    (post,) = page.posts
    assert post.id == "200" and post.text == "look <3" and post.created_at == "2026-05-02T09:00:00.000Z"
    assert post.url == "https://x.com/niji_curator/status/200"
    assert (post.author_id, post.author_name, post.author_handle) == ("1", "Curator", "niji_curator")
    assert post.author_avatar == "https://pbs.example/c.jpg"
    assert post.media == (MediaRef("3_own", "photo", "https://pbs.example/own.jpg", None, 800, 600, "a fox"),)
    assert post.via is None and post.via_id is None and post.original is None
    assert post.raw == {"tweet": tweet}
    assert page.newest_id == "200" and page.reads == 1 and page.errors == [] and page.gap is None


def test_a_retweet_shows_the_original_and_types_it():
    retweet = {"id": "300", "text": "RT @faraway_artist: new piece &amp; m…", "author_id": "1",
               "created_at": "2026-05-03T08:00:00.000Z", "referenced_tweets": [{"type": "retweeted", "id": "100"}]}
    (post,) = parse_page(answer(retweet)).posts
    assert post.id == "300" and post.author_handle == "niji_curator"  # who put it in the timeline
    assert post.text == "RT @faraway_artist: new piece & more"  # the original's full text, not the truncated copy
    assert post.url == "https://x.com/faraway_artist/status/100"
    assert post.via == "retweet" and post.via_id == "100"
    assert [m.media_key for m in post.media] == ["3_art"]
    assert post.original == OriginalPost(
        id="100", text="new piece & more", url="https://x.com/faraway_artist/status/100",
        created_at="2026-05-01T10:00:00.000Z", author_id="2", author_name="Far Away",
        author_handle="faraway_artist", author_avatar="https://pbs.example/f.jpg")
    assert post.raw == {"tweet": retweet, "referenced": ART}


def test_a_quote_adds_the_quoted_media_after_its_own_once_each():
    quote = {"id": "400", "text": "this! https://t.co/own", "author_id": "1", "created_at": "2026-05-03T09:00:00.000Z",
             "attachments": {"media_keys": ["3_own"]}, "referenced_tweets": [{"type": "quoted", "id": "100"}],
             "entities": {"urls": [{"url": "https://t.co/own", "media_key": "3_own"}]}}
    art = {**ART, "attachments": {"media_keys": ["3_own", "3_art"]}}  # shares one image with the quote
    (post,) = parse_page(answer(quote, referenced=(art,))).posts
    assert post.text == "this!" and post.url == "https://x.com/niji_curator/status/400"
    assert [m.media_key for m in post.media] == ["3_own", "3_art"]
    assert post.via == "quote" and post.via_id == "100"
    assert post.original is not None and post.original.author_handle == "faraway_artist"


def test_a_quote_of_a_text_post_keeps_its_original_but_no_via():
    quote = {"id": "401", "text": "agreed", "author_id": "1", "referenced_tweets": [{"type": "quoted", "id": "100"}]}
    bare = {"id": "100", "text": "an opinion", "author_id": "2"}
    (post,) = parse_page(answer(quote, referenced=(bare,))).posts
    assert post.media == () and post.via is None and post.via_id is None
    assert post.original is not None and post.original.text == "an opinion"


def test_a_retweet_of_a_post_on_the_same_page_finds_it_there():
    retweet = {"id": "300", "text": "RT @faraway_artist: …", "author_id": "1",
               "referenced_tweets": [{"type": "retweeted", "id": "100"}]}
    page = parse_page(answer(retweet, ART, referenced=()))
    assert [m.media_key for m in page.posts[0].media] == ["3_art"] == [m.media_key for m in page.posts[1].media]
    assert page.reads == 2


def test_a_missing_referenced_post_is_logged_and_its_partial_error_kept(caplog):
    retweet = {"id": "300", "text": "RT @gone: …", "author_id": "1", "referenced_tweets": [{"type": "retweeted",
                                                                                           "id": "555"}]}
    error = {"title": "Not Found Error", "detail": "Could not find tweet with id: [555].", "resource_type": "tweet",
             "resource_id": "555"}
    with caplog.at_level(logging.WARNING, logger="service.sources.x_parse"):
        page = parse_page(answer(retweet, referenced=(), errors=[error]))
    (post,) = page.posts
    assert post.via == "retweet" and post.via_id == "555" and post.original is None and post.media == ()
    assert post.url == "https://x.com/niji_curator/status/300" and post.raw == {"tweet": retweet}
    assert page.errors == ["Not Found Error: Could not find tweet with id: [555]."]
    assert "partial errors" in caplog.text and "does not include" in caplog.text


def test_videos_gifs_and_unknown_kinds():
    tweet = {"id": "500", "attachments": {"media_keys": ["7_vid", "16_gif", "9_odd", "3_missing"]}}
    refs = media_refs(tweet, {m["media_key"]: m for m in MEDIA})
    assert refs == (
        MediaRef("7_vid", "video", None, "https://pbs.example/thumb.jpg"),
        MediaRef("16_gif", "animated_gif", None, "https://pbs.example/gif.jpg"),
    )


def test_small_functions():
    assert status_url(None, "42") == "https://x.com/i/web/status/42"
    assert status_url("a", "42") == "https://x.com/a/status/42"
    # only a trailing link that is a media link is removed
    assert post_text({"text": "see https://t.co/x", "entities": {"urls": [{"url": "https://t.co/x"}]}}) == (
        "see https://t.co/x")
    assert post_text({}) == ""
    assert describe_error({"title": "Forbidden", "detail": "x", "value": "9"}) == "Forbidden: x (resource 9)"
    assert describe_error({}) == "error"
    assert parse_page({}).posts == [] and parse_page({}).reads == 0
    # the query asks for everything the parser reads
    assert {"referenced_tweets.id.attachments.media_keys", "referenced_tweets.id.author_id"} <= set(
        QUERY["expansions"].split(","))
    assert {"url", "preview_image_url", "type"} <= set(QUERY["media.fields"].split(","))
    assert {"username", "profile_image_url"} <= set(QUERY["user.fields"].split(","))
