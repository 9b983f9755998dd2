"""``/img/<sha256>`` and ``/thumb/<sha256>``: feed images from the local cache, so the page does not depend on the
original host. Only images in the feed are served. Content-addressed, so cached by browsers for good. An image
evicted from the cache (see ``service.media.cache``) is answered with a redirect to the URL it was fetched from."""

from __future__ import annotations

import re
from sqlite3 import Row

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from service.features import ImageError
from service.media.cache import THUMB_MIME
from service.web.state import WebState

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}


def image(request: Request) -> Response:
    state, row = _feed_image(request)
    sha = row["sha256"]
    path = state.cache.path_for(sha)
    if not path.is_file():
        return _fallback(row)
    state.served(sha)
    return FileResponse(path, media_type=state.cache.mime(sha), headers=IMMUTABLE)


def thumbnail(request: Request) -> Response:
    state, row = _feed_image(request)
    sha = row["sha256"]
    try:
        path = state.cache.thumbnail(sha, state.settings.web_thumb_size, state.limits)
    except ImageError:  # undecodable here (it was decodable when classified): let the browser try the original
        return RedirectResponse(request.url_for("image", sha256=sha).path, status_code=302)
    if path is None:
        return _fallback(row)
    state.served(sha)
    return FileResponse(path, media_type=THUMB_MIME, headers=IMMUTABLE)


def _feed_image(request: Request) -> tuple[WebState, Row]:
    state: WebState = request.app.state.web
    sha = request.path_params["sha256"]
    if not _SHA256.match(sha):
        raise HTTPException(404)
    row = state.store().image_for_serving(sha)
    if row is None or row["route"] != "feed":
        raise HTTPException(404)
    return state, row


def _fallback(row: Row) -> Response:
    url = row["media_url"]
    if not url or not url.startswith(("https://", "http://")):
        raise HTTPException(404)
    return RedirectResponse(url, status_code=302)
