"""Media: fetch image bytes for media references (bounded, retried, size- and host-limited).

Knows nothing of posts' meaning or of models: bytes in, bytes (or a reason for failure) out.

Typical use in a pipeline cycle::

    hosts = default_allowed_hosts(settings.x_api_base_url)
    async with Downloader(allowed_hosts=hosts, max_bytes=settings.max_image_bytes) as dl:
        items = [(ref.media_key, url) for ref in refs if (url := media_url(ref))]
        async for result in dl.fetch_many(items):   # as they complete: extract while others download
            ...  # result.ok / result.data, or store result.error and result.retryable
"""

from __future__ import annotations

from typing import Protocol

from service.media.download import (
    HTTP2,
    MAX_REDIRECTS,
    X_MEDIA_HOSTS,
    Download,
    Downloader,
    check_url,
    default_allowed_hosts,
    file_url_path,
    redact_url,
    valid_variant,
    variant_url,
)


class MediaUrls(Protocol):
    """What ``media_url`` reads: a source's ``MediaRef``, or the store's row of a media waiting for download."""

    @property
    def kind(self) -> str: ...
    @property
    def url(self) -> str | None: ...
    @property
    def preview_url(self) -> str | None: ...


def media_url(ref: MediaUrls) -> str | None:
    """The URL to fetch for a media reference: a photo's (or a file's) own URL, a video's or GIF's preview
    image; ``None`` when the reference has neither. ``Downloader.fetch`` applies the size variant itself."""
    if ref.kind in ("photo", "file"):
        return ref.url or ref.preview_url
    return ref.preview_url


__all__ = [
    "HTTP2",
    "MAX_REDIRECTS",
    "X_MEDIA_HOSTS",
    "Download",
    "Downloader",
    "check_url",
    "default_allowed_hosts",
    "file_url_path",
    "media_url",
    "redact_url",
    "valid_variant",
    "variant_url",
]
