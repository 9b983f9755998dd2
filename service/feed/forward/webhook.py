"""The webhook forwarder: an httpx POST per entry, as nijifeed's JSON or in Discord's webhook format.

The JSON body carries the entry (``FeedEntry.to_dict()``) and every request an ``Idempotency-Key`` header that is
the same for every try of the same entry, so a receiver can drop a repeat sent after a crash mid-send. Discord
ignores that header, so the Discord format is not resent after such a crash (``resend_safe`` False).
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from service.feed.entries import FeedEntry
from service.feed.forward.base import ForwardError

USER_AGENT = "nijifeed-webhook/1"
#: Answers worth retrying; any other 4xx will be answered the same way next time.
_RETRYABLE_4XX = {408, 409, 425, 429}
_DISCORD_CONTENT_MAX = 2000
_DISCORD_EMBEDS_MAX = 4  # Discord shows up to four images of embeds sharing a url as one gallery


class WebhookForwarder:
    name = "webhook"

    def __init__(self, url: str, *, fmt: Literal["json", "discord"] = "json", timeout: float = 15.0) -> None:
        self.url = url
        self.fmt = fmt
        self.resend_safe = fmt == "json"
        self._client = httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT}, follow_redirects=False)

    def send(self, entry: FeedEntry, idempotency_key: str) -> None:
        body = discord_body(entry) if self.fmt == "discord" else {"event": "feed.entry", "entry": entry.to_dict()}
        try:
            response = self._client.post(self.url, json=body, headers={"Idempotency-Key": idempotency_key})
        except httpx.TimeoutException:
            raise ForwardError("webhook: no answer in time") from None
        except httpx.HTTPError as exc:
            raise ForwardError(f"webhook: {type(exc).__name__}") from None
        status = response.status_code
        if status < 300:
            return
        retryable = status >= 500 or status in _RETRYABLE_4XX
        raise ForwardError(f"webhook answered {status} {response.reason_phrase}", retryable=retryable)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:  # the URL may hold a secret (Discord's does)
        return f"WebhookForwarder(fmt={self.fmt!r})"


def discord_body(entry: FeedEntry) -> dict[str, Any]:
    """A Discord webhook message: who and what as text, the images as embeds grouped into one gallery."""
    who = entry.author_name or "someone"
    if entry.author_handle:
        who += f" (@{entry.author_handle})"
    content = f"**{who}**: {entry.text or ''}".strip()
    if entry.url:
        content = f"{content[: _DISCORD_CONTENT_MAX - len(entry.url) - 2]}\n{entry.url}"
    embeds = [{"url": entry.url or "https://x.com", "image": {"url": image.url}}
              for image in entry.images[:_DISCORD_EMBEDS_MAX] if image.url]
    return {"content": content[:_DISCORD_CONTENT_MAX], "embeds": embeds, "allowed_mentions": {"parse": []}}
