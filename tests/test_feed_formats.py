"""The feed for feed readers: /feed.atom parsed by feedparser (valid Atom 1.0, images as enclosures) and
/feed.json checked against JSON Feed 1.1's required fields (attachments with url and mime_type)."""

from __future__ import annotations

import json

import feedparser
from feedkit import web_client


def all_entries(cli) -> list[dict]:
    return json.loads(cli("feed", "--json", "--limit", "1000").stdout)


def test_atom_feed_is_valid_with_enclosures_and_pages(polled, cli):
    expected = all_entries(cli)
    with web_client(web_page_size=4) as client:
        response = client.get("/feed.atom")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/atom+xml")
        parsed = feedparser.parse(response.content)
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        assert parsed.version == "atom10"
        assert parsed.feed.title and parsed.feed.updated
        assert [e.link for e in parsed.entries] == [e["url"] for e in expected[:4]]
        for entry, source in zip(parsed.entries, expected[:4], strict=True):
            assert entry.id.startswith("urn:nijifeed:post:") and entry.title and entry.published and entry.author
            enclosures = entry.enclosures
            assert [e.href for e in enclosures] == [f"http://127.0.0.1:8000/img/{i['sha256']}" for i in source["images"]]
            assert all(e.type.startswith("image/") for e in enclosures)
            assert "p(2D)" in entry.content[0].value
            for enclosure in enclosures:  # the enclosures are served by this server
                image = client.get(enclosure.href)
                assert image.status_code == 200 and image.headers["content-type"] == enclosure.type
        # RFC 5005 paging: the next page continues where this one stopped
        next_link = next(link.href for link in parsed.feed.links if link.rel == "next")
        second = feedparser.parse(client.get(next_link).content)
        assert second.bozo == 0 and [e.link for e in second.entries] == [e["url"] for e in expected[4:8]]


def test_json_feed_has_the_required_fields(polled, cli):
    expected = all_entries(cli)
    with web_client(web_page_size=50) as client:
        response = client.get("/feed.json")
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/feed+json")
        feed = response.json()
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(feed["title"], str) and feed["title"]
    assert feed["home_page_url"] == "http://127.0.0.1:8000/" and feed["feed_url"].endswith("/feed.json")
    assert "next_url" not in feed  # everything fits one page
    assert len(feed["items"]) == len(expected)
    for item, source in zip(feed["items"], expected, strict=True):
        assert isinstance(item["id"], str) and item["id"]
        assert item.get("content_html") or item.get("content_text")
        assert item["url"] == source["url"] and item["date_published"].endswith("Z")
        assert item["authors"][0]["name"]
        assert item["attachments"], "every entry has an image"
        for attachment, image in zip(item["attachments"], source["images"], strict=True):
            assert attachment["url"].endswith(f"/img/{image['sha256']}")
            assert attachment["mime_type"].startswith("image/")
        figures = item["_nijifeed"]["images"]
        assert [f["p_2d"] for f in figures] == [i["p_2d"] for i in source["images"]]
        assert all(f["model_version"] == 1 for f in figures)


def test_feeds_requested_with_a_query_token_carry_it_in_their_links(polled):
    with web_client(web_token="s3cret-token", web_page_size=2) as client:
        assert client.get("/feed.json").status_code == 401
        feed = client.get("/feed.json?token=s3cret-token").json()
        assert "token=s3cret-token" in feed["next_url"]
        attachment = feed["items"][0]["attachments"][0]["url"]
        assert attachment.endswith("?token=s3cret-token")
        assert client.get(attachment).status_code == 200
