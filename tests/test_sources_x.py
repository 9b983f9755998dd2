"""XSource and XClient through real HTTP: the real tweepy client against the local sandbox on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import requests
from xsandbox import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    BEARER_TOKEN,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    SECRETS,
    Sleeps,
    all_log_text,
    all_posts,
    collect,
    make_source,
    timeline_requests,
)

from service.sandbox import Sandbox, snowflake
from service.sources import SourceError
from service.sources.x_client import XClient
from service.sources.x_timeline import XSource, snowflake_ms


def test_user_id_resolved_once(sandbox):
    source = make_source(sandbox)
    assert source.client.user_id() == sandbox.me["id"]
    collect(source)
    collect(source)
    assert [r.path for r in sandbox.requests if r.endpoint == "me"] == ["/2/users/me"]


@pytest.mark.parametrize("sandbox", [{"reveal": 17}], indirect=True)
def test_first_poll_reads_every_page_once(sandbox):
    source = make_source(sandbox, max_results=5)
    pages = collect(source)
    truth = [p["id"] for p in sandbox.posts()]
    assert [post.id for post in all_posts(pages)] == truth  # newest first, each once
    assert [len(p.posts) for p in pages] == [5, 5, 5, 2]
    assert pages[0].newest_id == truth[0]
    assert not any(p.gap for p in pages) and source.last_gap is None
    asked = timeline_requests(sandbox)
    assert len(asked) == 4 and "pagination_token" not in asked[0].query
    assert all("pagination_token" in r.query and "since_id" not in r.query for r in asked[1:])
    assert asked[0].query["max_results"] == "5"
    assert set(asked[0].query["expansions"].split(",")) == {
        "attachments.media_keys", "referenced_tweets.id", "referenced_tweets.id.attachments.media_keys",
        "author_id", "referenced_tweets.id.author_id"}
    assert {"url", "preview_image_url", "type", "width", "height", "alt_text"} <= set(
        asked[0].query["media.fields"].split(","))
    for page in pages:  # reads: posts + referenced posts expanded in includes.tweets
        referenced = {p.via_id for p in page.posts if p.via_id} | {
            r["id"] for p in page.posts for r in p.raw["tweet"].get("referenced_tweets", [])}
        assert page.reads == len(page.posts) + len(referenced)


@pytest.mark.parametrize("sandbox", [{"reveal": 10}], indirect=True)
def test_repeated_poll_sees_only_new_posts(sandbox):
    source = make_source(sandbox, max_results=5)
    first = collect(source)
    cursor = first[0].newest_id
    assert collect(source, cursor)[0].posts == []
    new = sandbox.publish(7)
    pages = collect(source, cursor)
    assert [p.id for p in all_posts(pages)] == list(reversed(new))
    assert pages[0].newest_id == new[-1]
    assert all(r.query.get("since_id") == cursor for r in timeline_requests(sandbox)[-len(pages):])
    later = collect(source, pages[0].newest_id)
    assert len(later) == 1 and later[0].posts == [] and later[0].newest_id is None


def test_retweets_quotes_video_and_text(sandbox):
    source = make_source(sandbox)
    posts = {p.id: p for p in all_posts(collect(source))}
    truth = sandbox.posts()
    for expected in truth:
        post = posts[expected["id"]]
        assert [m.media_key for m in post.media] == [m["media_key"] for m in expected["shown"]], expected["key"]
    retweets = [t for t in truth if t["kind"] == "retweet"]
    assert len(retweets) == 2
    for expected in retweets:
        post = posts[expected["id"]]
        assert post.via == "retweet" and post.via_id == expected["ref_id"]
        assert post.media and post.author_handle == "niji_curator"
        assert post.url == f"https://x.com/{expected['ref_author']}/status/{expected['ref_id']}"
        assert post.text.startswith(f"RT @{expected['ref_author']}: ")
        assert post.original is not None and post.original.author_handle == expected["ref_author"]
        assert post.original.id == expected["ref_id"] and post.original.url == post.url
    # a retweet of a post also on the timeline shows the very same media keys
    on_timeline = next(t for t in retweets if t["ref_id"] in posts)
    assert [m.media_key for m in posts[on_timeline["id"]].media] == [m.media_key for m in posts[on_timeline["ref_id"]].media]
    quotes = {t["key"]: posts[t["id"]] for t in truth if t["kind"] == "quote"}
    assert quotes["quote_far"].via == "quote" and len(quotes["quote_far"].media) == 3
    assert quotes["quote_far"].author_handle == "niji_curator"
    assert quotes["quote_far"].url.endswith(f"/niji_curator/status/{quotes['quote_far'].id}")
    assert len(quotes["quote_own"].media) == 2 and quotes["quote_own"].via == "quote"  # its own + the quoted one
    video = next(posts[t["id"]] for t in truth if t["key"] == "video")
    (ref,) = video.media
    assert ref.kind == "video" and ref.url is None and ref.preview_url and "/ext_tw_video_thumb/" in ref.preview_url
    gif = next(posts[t["id"]] for t in truth if t["key"] == "gif")
    assert gif.media[0].kind == "animated_gif" and gif.media[0].url is None and gif.media[0].preview_url
    photo = next(p for p in posts.values() if p.media and p.media[0].kind == "photo" and p.via is None)
    assert photo.media[0].url.startswith(sandbox.url + "/media/") and photo.media[0].preview_url is None
    assert photo.media[0].width and photo.media[0].height
    assert photo.url == f"https://x.com/{photo.author_handle}/status/{photo.id}" and photo.author_avatar
    assert "https://t.co/" not in photo.text and photo.created_at.endswith("Z")
    assert any(p.text == "hot take: tabs & spaces can coexist <3" for p in posts.values())


def test_rate_limited_gives_retry_after_without_waiting(sandbox):
    sleeps = Sleeps()
    source = make_source(sandbox, sleep=sleeps)
    source.client.user_id()
    sandbox.inject("429", reset_in=120)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        collect(source)
    assert time.monotonic() - started < 30 and sleeps == []  # waiting out the window would take 120 s
    assert not caught.value.fatal and 115 <= caught.value.retry_after <= 121
    assert len(timeline_requests(sandbox)) == 1


def test_server_error_once_is_retried(sandbox):
    sleeps = Sleeps()
    source = make_source(sandbox, sleep=sleeps, backoff=0.5)
    sandbox.inject("503", target="timeline")
    pages = collect(source)
    assert len(all_posts(pages)) == 40
    assert [r.status for r in timeline_requests(sandbox)] == [503, 200]
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5


def test_server_errors_exhaust_retries(sandbox):
    sleeps = Sleeps()
    source = make_source(sandbox, sleep=sleeps, retries=2, backoff=1.0)
    sandbox.inject("502", times=None, target="timeline")
    with pytest.raises(SourceError) as caught:
        collect(source)
    assert not caught.value.fatal and caught.value.retry_after and caught.value.retry_after > 0
    assert len(timeline_requests(sandbox)) == 3 and len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.9


def test_slow_answer_times_out_and_is_retried(sandbox):
    source = make_source(sandbox, timeout=0.3)
    source.client.user_id()
    sandbox.inject("slow", seconds=10.0, target="timeline")
    started = time.monotonic()
    pages = collect(source)
    assert len(all_posts(pages)) == 40
    assert 0.3 <= time.monotonic() - started < 5  # gave up after 0.3 s: the 10 s answer was not waited for
    assert len(timeline_requests(sandbox)) == 2 and len(source.client._sleep) == 1  # type: ignore[arg-type]


def test_stop_event_ends_backoff(sandbox):
    stop = threading.Event()
    stop.set()
    source = make_source(sandbox, sleep=None, stop=stop, backoff=30)
    source.client.user_id()
    sandbox.inject("503", target="timeline")
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        collect(source)
    assert time.monotonic() - started < 15 and not caught.value.fatal  # the 30 s backoff was not slept


def test_partial_errors_are_recorded_and_data_used(sandbox, caplog):
    source = make_source(sandbox)
    sandbox.inject("partial_error")
    with caplog.at_level(logging.WARNING, logger="service.sources.x_parse"):
        (page,) = collect(source)
    assert len(page.posts) == 40
    (error,) = page.errors
    assert "Not Found Error" in error and "Could not find tweet" in error
    assert "partial errors" in caplog.text
    missing = error.split("[")[1].split("]")[0]
    affected = [p for p in page.posts if missing in {r["id"] for r in p.raw["tweet"].get("referenced_tweets", [])}]
    assert affected  # shown with their own media only: the referenced post's are unknown
    assert all(len(p.media) == len(p.raw["tweet"].get("attachments", {}).get("media_keys", [])) for p in affected)
    assert sum(len(p.media) for p in page.posts) == sum(len(t["shown"]) for t in sandbox.posts()) - len(
        next(t for t in sandbox.posts() if t["ref_id"] == missing)["shown"])


@pytest.mark.parametrize("mode", ["oauth1", "bearer"])
def test_unauthorized_is_fatal_and_keeps_secrets(sandbox, caplog, mode):
    source = make_source(sandbox, mode=mode)
    sandbox.inject("401")
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as caught:
        collect(source)
    error = caught.value
    assert error.fatal and "401" in str(error) and "regenerat" in str(error)
    assert len(sandbox.requests) == 1  # no retry, no hot loop
    logged = all_log_text(caplog.records)
    assert "tweepy" in logged and "***" in logged  # tweepy logged the headers, masked
    for secret in SECRETS:
        assert secret not in str(error) and secret not in repr(error.args)
        assert secret not in logged, secret
        assert secret not in repr(source)


def test_forbidden_explains_what_to_check(sandbox, caplog):
    source = make_source(sandbox, mode="oauth1")
    sandbox.inject("403", target="timeline")
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as caught:
        collect(source)
    message = str(caught.value)
    assert caught.value.fatal and "403" in message and "client-not-enrolled" in message
    assert "Project" in message and "plan" in message
    assert len(timeline_requests(sandbox)) == 1
    for secret in SECRETS:
        assert secret not in message and secret not in all_log_text(caplog.records)


def test_app_only_bearer_token_is_explained(sandbox):
    app_only = "AAAAAAAAAAAAAAAAAAAAA" + "SECRETappOnly%3D"
    source = make_source(sandbox, mode="bearer", bearer_token=app_only)
    with pytest.raises(SourceError) as caught:
        collect(source)
    assert caught.value.fatal and "app-only" in str(caught.value) and app_only not in str(caught.value)


@pytest.mark.parametrize("mode, scheme", [("oauth1", "OAuth"), ("bearer", "Bearer")])
def test_authorization_header_kind(sandbox, mode, scheme):
    collect(make_source(sandbox, mode=mode, max_results=10))
    assert sandbox.requests and {r.auth for r in sandbox.requests} == {scheme}


def test_every_call_goes_to_the_base_url_with_a_timeout(sandbox, monkeypatch):
    looked_up: list[str] = []
    sent: list[tuple[str, object]] = []
    real_getaddrinfo = socket.getaddrinfo
    real_send = requests.adapters.HTTPAdapter.send

    def getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    def send(self, request, **kwargs):
        sent.append((request.url, kwargs.get("timeout")))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    for mode in ("oauth1", "bearer"):
        collect(make_source(sandbox, mode=mode, max_results=10, timeout=1.5))
    # users/me + 4 full pages + the empty page a full last page's next_token leads to; twice
    assert len(sent) == 2 * 6 == len(sandbox.requests)
    assert all(url.startswith(sandbox.url + "/2/") and timeout == 1.5 for url, timeout in sent)
    assert set(looked_up) <= {"127.0.0.1"}


def test_gap_when_since_id_is_older_than_seven_days(sandbox, caplog):
    source = make_source(sandbox)
    old = snowflake(int((time.time() - 8 * 86400) * 1000))
    with caplog.at_level(logging.WARNING, logger="service.sources.x_timeline"):
        pages = collect(source, old)
    assert len(all_posts(pages)) == 40
    assert "7-day window" in pages[0].gap and source.last_gap == pages[0].gap
    record = next(r for r in caplog.records if getattr(r, "gap", None))
    assert record.levelno == logging.WARNING


@pytest.mark.parametrize("sandbox", [{"reveal": 20}], indirect=True)
def test_gap_when_max_pages_stops_early(sandbox):
    source = make_source(sandbox, max_results=5, max_pages=2)
    truth = [p["id"] for p in sandbox.posts()]
    pages = collect(source, truth[-1])
    assert [len(p.posts) for p in pages] == [5, 5]
    assert pages[0].gap is None and "max_pages=2" in pages[-1].gap
    first_poll = collect(source)  # no since_id: nothing to miss, no gap
    assert not any(p.gap for p in first_poll)


@pytest.mark.parametrize("sandbox", [{"cap": 10}], indirect=True)
def test_gap_when_the_800_post_window_is_exhausted(sandbox):
    source = make_source(sandbox, max_results=5, window_posts=10)
    oldest_revealed = sandbox.timeline.timeline[0].id  # beyond the (shrunk) cap
    pages = collect(source, oldest_revealed)
    assert len(all_posts(pages)) == 10 and "window" in pages[-1].gap


def test_credentials_are_checked_without_showing_them():
    with pytest.raises(SourceError) as caught:
        XClient()
    assert caught.value.fatal and "NIJIFEED_X_BEARER_TOKEN" in str(caught.value)
    with pytest.raises(SourceError) as caught:
        XClient(consumer_key="ck-SECRET", access_token=ACCESS_TOKEN)
    assert "NIJIFEED_X_CONSUMER_SECRET" in str(caught.value) and ACCESS_TOKEN not in str(caught.value)
    assert "NIJIFEED_X_ACCESS_TOKEN_SECRET" in str(caught.value)
    with pytest.raises(ValueError):
        XSource(XClient(bearer_token="x"), max_results=101)


def test_from_settings(sandbox):
    from pydantic import SecretStr

    from service.config import Settings

    settings = Settings(x_api_base_url=sandbox.url, x_bearer_token=SecretStr(BEARER_TOKEN), x_max_results=20,
                        http_timeout=3)
    source = XSource.from_settings(settings, sleep=Sleeps())
    assert source.max_results == 20 and source.client.timeout == 3 and source.client.auth_mode == "oauth2-user"
    assert len(all_posts(collect(source))) == 40
    assert BEARER_TOKEN not in repr(source)
    assert snowflake_ms(snowflake(1_700_000_000_000)) == 1_700_000_000_000


def test_oauth1_signature_is_valid_for_the_redirected_url(no_proxy):
    creds = {"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET, "access_token": ACCESS_TOKEN,
             "access_token_secret": ACCESS_TOKEN_SECRET}
    with Sandbox(reveal=12, oauth1_credentials=creds) as checked:
        pages = collect(make_source(checked, mode="oauth1", max_results=5))  # query strings are signed too
        assert len(all_posts(pages)) == 12 and {r.status for r in checked.requests} == {200}
        with pytest.raises(SourceError) as caught:
            collect(make_source(checked, mode="oauth1", consumer_secret="wrong-secret"))
        assert caught.value.fatal and "401" in str(caught.value)
