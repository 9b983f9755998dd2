"""Forwarders against servers on 127.0.0.1: a webhook receiver that fails then recovers, crashes at every step of
a delivery, the Discord format, and the X repost/bookmark forwarder against a stub of the two X API endpoints."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from feedkit import settings

from service.feed import feed_entries
from service.feed.forward import deliver_due, enqueue, make_forwarders
from service.feed.forward.outbox import LEASE
from service.sources import SourceError
from service.store import Store

T0 = datetime(2000, 1, 1, tzinfo=UTC)  # "the forwarder was switched on before the poll"


class Receiver:
    """An HTTP server on 127.0.0.1 that answers POSTs with scripted statuses (then 200) and records them."""

    def __init__(self, statuses=(), routes=None) -> None:
        self.statuses = list(statuses)
        self.routes = routes or {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                receiver.answer(self, None)

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.answer(self, body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, handler, body) -> None:
        with self.lock:
            status = self.statuses.pop(0) if self.statuses and body is not None else 200
            self.requests.append({"method": handler.command, "path": handler.path, "body": body, "status": status,
                                  "headers": dict(handler.headers)})
        payload = json.dumps(self.routes.get(handler.path, {"ok": status < 300})).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def accepted(self) -> list[dict]:
        return [r for r in self.requests if r["status"] < 300 and r["method"] == "POST"]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def open_store(data_dir) -> Store:
    return Store.open(data_dir / "nijifeed.sqlite3")


def outbox(store: Store) -> list[dict]:
    return [dict(r) for r in store.conn.execute("SELECT * FROM outbox ORDER BY id")]


def test_webhook_failing_then_recovering_delivers_each_entry_once(polled):
    with Receiver(statuses=[500, 500, 503]) as receiver, open_store(polled) as store:
        config = settings(forward_webhook_url=receiver.url + "/hook", forward_backoff=1.0)
        entries = feed_entries(store, limit=1000)
        forwarders = make_forwarders(config)
        first = deliver_due(config, store, forwarders, now=T0)
        assert first.enqueued == len(entries) and first.retrying == 3 and first.delivered == len(entries) - 3
        early = deliver_due(config, store, forwarders, now=T0 + timedelta(milliseconds=500))
        assert early.delivered == 0  # the backoff has not run out
        second = deliver_due(config, store, forwarders, now=T0 + timedelta(seconds=1))
        assert second.enqueued == 0 and second.delivered == 3
        assert deliver_due(config, store, forwarders, now=T0 + timedelta(hours=1)).delivered == 0
        delivered = Counter(r["body"]["entry"]["id"] for r in receiver.accepted())
        assert delivered == Counter({e.id: 1 for e in entries})
        rows = outbox(store)
        assert [r["status"] for r in rows] == ["delivered"] * len(entries)
        assert sorted(r["attempts"] for r in rows) == [1] * (len(entries) - 3) + [2] * 3
        sent = receiver.requests[0]
        assert sent["headers"]["Content-Type"] == "application/json"
        assert sent["headers"]["Idempotency-Key"] == f"nijifeed-webhook-{sent['body']['entry']['id']}"
        assert sent["body"]["event"] == "feed.entry" and sent["body"]["entry"]["images"]
        # Each image once (issue 9): a quote carrying an image already in the feed is not forwarded again.
        images = Counter(i["sha256"] for r in receiver.accepted() for i in r["body"]["entry"]["images"])
        assert images and max(images.values()) == 1


def test_only_entries_new_to_the_feed_after_switching_on_are_forwarded(polled):
    with Receiver() as receiver, open_store(polled) as store:
        config = settings(forward_webhook_url=receiver.url)
        assert deliver_due(config, store).enqueued == 0  # already in the feed when switched on
        row = store.conn.execute("SELECT id FROM images WHERE route = 'review' LIMIT 1").fetchone()
        later = datetime.now(UTC) + timedelta(seconds=1)
        with store.transaction() as conn:  # a person labels an image 2D: its post enters the feed
            conn.execute("UPDATE images SET route = 'feed', routed_by = 'label', routed_at = ? WHERE id = ?",
                         (later.isoformat(timespec="milliseconds"), row["id"]))
            conn.execute("UPDATE media SET status = 'feed' WHERE image_id = ?", (row["id"],))
        summary = deliver_due(config, store, now=later + timedelta(seconds=1))
        assert summary.enqueued >= 1 and summary.delivered == summary.enqueued == len(receiver.accepted())
        # switched off and on again: what entered the feed in between is not forwarded
        deliver_due(settings(), store)
        assert store.get_kv("forward:enabled_at:webhook") is None


def test_a_crash_between_enqueue_and_delivery_delivers_once(polled):
    with Receiver() as receiver:
        config = settings(forward_webhook_url=receiver.url)
        with open_store(polled) as store:
            added = enqueue(store, make_forwarders(config), now=T0)
            assert added > 0 and {r["status"] for r in outbox(store)} == {"pending"}
        # the process died here; a new one starts
        with open_store(polled) as store:
            assert deliver_due(config, store, now=T0).delivered == added
            assert deliver_due(config, store, now=T0 + LEASE * 2).delivered == 0
        assert len(receiver.accepted()) == added
        assert len({r["body"]["entry"]["id"] for r in receiver.accepted()}) == added


class Dies:
    """Wraps a forwarder: on its first send, dies (SystemExit, like a kill) before or after really sending."""

    def __init__(self, inner, *, after_sending: bool) -> None:
        self.inner, self.after_sending, self.died = inner, after_sending, False
        self.name, self.resend_safe = inner.name, inner.resend_safe

    def send(self, entry, key):
        if not self.died:
            self.died = True
            if self.after_sending:
                self.inner.send(entry, key)
            raise SystemExit("killed mid-send")
        self.inner.send(entry, key)

    def close(self):
        self.inner.close()


@pytest.mark.parametrize("after_sending", [False, True], ids=["before-the-request", "after-the-receiver-got-it"])
def test_a_crash_mid_send_never_delivers_twice(polled, after_sending):
    with Receiver() as receiver, open_store(polled) as store:
        config = settings(forward_webhook_url=receiver.url)
        with pytest.raises(SystemExit):
            deliver_due(config, store, [Dies(make_forwarders(config)[0], after_sending=after_sending)], now=T0)
        assert [r["status"] for r in outbox(store)][:1] == ["sending"]
        restarted = make_forwarders(config)
        # while the lease lasts, the interrupted row is left alone (its sender may still be at work)
        during = deliver_due(config, store, restarted, now=T0 + timedelta(minutes=1))
        total = len(outbox(store))
        assert during.delivered == total - 1 and outbox(store)[0]["status"] == "sending"
        after = deliver_due(config, store, restarted, now=T0 + LEASE + timedelta(minutes=1))
        assert after.delivered == 1 and {r["status"] for r in outbox(store)} == {"delivered"}
        keys = Counter(r["headers"]["Idempotency-Key"] for r in receiver.accepted())
        assert len(keys) == total  # each entry reached the receiver under one key...
        assert max(keys.values()) == (2 if after_sending else 1)  # ...sent again only where it may have arrived


def test_discord_format_is_not_resent_after_a_crash_mid_send(polled):
    with Receiver() as receiver, open_store(polled) as store:
        config = settings(forward_webhook_url=receiver.url, forward_webhook_format="discord")
        with pytest.raises(SystemExit):
            deliver_due(config, store, [Dies(make_forwarders(config)[0], after_sending=True)], now=T0)
        summary = deliver_due(config, store, now=T0 + LEASE + timedelta(minutes=1))
        assert summary.abandoned == 1
        rows = outbox(store)
        assert rows[0]["status"] == "failed" and "interrupted" in rows[0]["last_error"]
        assert len(receiver.accepted()) == len(rows)  # the interrupted one arrived once, the rest once each
        body = receiver.accepted()[0]["body"]
        assert set(body) == {"content", "embeds", "allowed_mentions"} and len(body["content"]) <= 2000
        assert body["embeds"] and all(e["image"]["url"].startswith("http") for e in body["embeds"])
        assert "https://x.com/" in body["content"]


def test_a_webhook_refusal_is_given_up_at_once(polled):
    with Receiver(statuses=[400] * 1000) as receiver, open_store(polled) as store:
        config = settings(forward_webhook_url=receiver.url)
        summary = deliver_due(config, store, now=T0)
        assert summary.failed == summary.enqueued > 0 and summary.retrying == 0
        assert {(r["status"], r["attempts"]) for r in outbox(store)} == {("failed", 1)}
        assert "400" in outbox(store)[0]["last_error"]
        assert deliver_due(config, store, now=T0 + timedelta(days=1)).delivered == 0


def test_x_repost_and_bookmark_once_each_through_the_api(polled):
    user = {"/2/users/me": {"data": {"id": "4242", "name": "me", "username": "me"}},
            "/2/users/4242/retweets": {"data": {"retweeted": True}},
            "/2/users/4242/bookmarks": {"data": {"bookmarked": True}}}
    with Receiver(statuses=[503], routes=user) as api, open_store(polled) as store:
        config = settings(x_api_base_url=api.url, forward_x_repost=True, forward_x_bookmark=True, x_retries=0,
                          forward_backoff=1.0)
        forwarders = make_forwarders(config)
        assert sorted(f.name for f in forwarders) == ["x_bookmark", "x_repost"]
        entries = feed_entries(store, limit=1000)
        first = deliver_due(config, store, forwarders, now=T0)
        assert first.enqueued == 2 * len(entries) and first.retrying == 1
        assert deliver_due(config, store, forwarders, now=T0 + timedelta(seconds=2)).delivered == 1
        posted = Counter((r["path"], r["body"]["tweet_id"]) for r in api.accepted())
        expected = {(f"/2/users/4242/{kind}", e.id): 1 for e in entries for kind in ("retweets", "bookmarks")}
        assert posted == Counter(expected)  # a retweeted post is reposted as its original
        assert [r["path"] for r in api.requests].count("/2/users/me") == 1  # the user id is resolved once
        assert all(r["headers"]["Authorization"] == "Bearer user-feed-test-token" for r in api.requests)


def test_x_repost_already_done_is_delivered_and_another_refusal_is_not(polled):
    already = {"title": "Forbidden", "detail": "You have already retweeted this Tweet.", "type": "about:blank",
               "status": 403}
    user = {"/2/users/me": {"data": {"id": "4242", "name": "me", "username": "me"}},
            "/2/users/4242/retweets": already}
    with Receiver(statuses=[403] * 1000, routes=user) as api, open_store(polled) as store:
        config = settings(x_api_base_url=api.url, forward_x_repost=True, x_retries=0)
        summary = deliver_due(config, store, make_forwarders(config), now=T0)
        entries = feed_entries(store, limit=1000)
        assert summary.enqueued == summary.delivered == len(entries) > 0 and summary.failed == 0
        assert {(r["status"], r["attempts"], r["last_error"]) for r in outbox(store)} == {("delivered", 1, None)}
        assert Counter(r["status"] for r in api.requests if r["method"] == "POST") == Counter({403: len(entries)})
    refused = {**user, "/2/users/4242/retweets": {**already, "detail": "You are not permitted to repost this."}}
    with Receiver(statuses=[403] * 1000, routes=refused) as api, open_store(polled) as store:
        config = settings(x_api_base_url=api.url, forward_x_repost=True, x_retries=0)
        with store.transaction() as conn:
            conn.execute("DELETE FROM outbox")
        summary = deliver_due(config, store, make_forwarders(config), now=T0)
        assert summary.failed == summary.enqueued > 0 and summary.delivered == 0  # fatal: given up at once
        assert all("not permitted" in r["last_error"] for r in outbox(store))


def test_x_forwarder_without_credentials_is_refused(polled, monkeypatch):
    monkeypatch.delenv("NIJIFEED_X_BEARER_TOKEN")
    with pytest.raises(SourceError, match="no X credentials"):
        make_forwarders(settings(forward_x_repost=True))
    assert make_forwarders(settings()) == []


def test_a_daemon_started_with_a_forwarder_on_forwards_what_its_first_polls_bring(service_env, sandbox, monkeypatch):
    """Issue 9: everything that reached the feed before the forward job first ran was never forwarded (the
    "switched on" instant was only recorded by that first run)."""
    from pipelinekit import use

    from service.config import load_settings
    from service.pipeline.service import Service

    use(monkeypatch, sandbox)
    with Receiver() as receiver:
        monkeypatch.setenv("NIJIFEED_FORWARD_WEBHOOK_URL", receiver.url + "/hook")
        settings = load_settings(poll_interval=1, forward_interval=3600)  # the forward job never runs here
        with Service.from_settings(settings, max_cycles=2, any_port=True) as service:
            service.run()
        with Store.open(settings.db_path) as store:
            entries = feed_entries(store, limit=1000)
            assert entries
            summary = deliver_due(settings, store)  # the forward job's first run, after the polls
        assert summary.delivered == len(entries)
        assert sorted(r["body"]["entry"]["id"] for r in receiver.accepted()) == sorted(e.id for e in entries)
