"""``/`` (the timeline page) and ``/feed.atom``, ``/feed.json``: one page of feed entries each, older pages by
``?before=CURSOR`` (a keyset cursor, stable while new posts arrive on top)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.resources import files
from urllib.parse import urlencode, urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from service.errors import InputError
from service.feed import Cursor, FeedImage, FeedPage, feed_page
from service.feed.atom import MEDIA_TYPE as ATOM_TYPE
from service.feed.atom import render_atom
from service.feed.jsonfeed import MEDIA_TYPE as JSON_FEED_TYPE
from service.feed.jsonfeed import render_json_feed
from service.feed.render import Attachment, FeedMeta
from service.feed.times import relative
from service.web.state import WebState

TITLE = "nijifeed: 2D only"
templates = Jinja2Templates(directory=str(files("service.web") / "templates"))


def index(request: Request) -> Response:
    state: WebState = request.app.state.web
    page = _page(request, state)
    now = datetime.now(UTC)
    context = {
        "title": TITLE,
        "page": page,
        "root": request.scope.get("root_path", ""),
        "next_url": _page_url(request, page),
        "ago": lambda value: relative(value, now=now),
        "caption": _caption,
    }
    return templates.TemplateResponse(request, "index.html", context, headers={"Cache-Control": "no-store"})


def atom(request: Request) -> Response:
    state: WebState = request.app.state.web
    page = _page(request, state)
    body = render_atom(page.entries, _meta(request, page), _attacher(request, state))
    return Response(body, media_type=ATOM_TYPE)


def json_feed(request: Request) -> Response:
    state: WebState = request.app.state.web
    page = _page(request, state)
    body = render_json_feed(page.entries, _meta(request, page), _attacher(request, state))
    return Response(json.dumps(body, ensure_ascii=False, indent=1), media_type=JSON_FEED_TYPE)


def _page(request: Request, state: WebState) -> FeedPage:
    before = request.query_params.get("before")
    try:
        cursor = Cursor.decode(before) if before else None
    except InputError as exc:
        raise HTTPException(400, str(exc)) from None
    return feed_page(state.store(), limit=state.settings.web_page_size, before=cursor)


def _page_url(request: Request, page: FeedPage) -> str | None:
    """The next page's URL, relative to this one (keeping a query token, for feed readers)."""
    if page.next is None:
        return None
    query = {"before": page.next.encode()}
    if "token" in request.query_params:
        query["token"] = request.query_params["token"]
    return f"{request.url.path}?{urlencode(query)}"


def _meta(request: Request, page: FeedPage) -> FeedMeta:
    base = str(request.base_url)
    self_url = str(request.url)
    next_url = _page_url(request, page)
    return FeedMeta(TITLE, base, self_url, f"{base.rstrip('/')}{next_url}" if next_url else None)


def _attacher(request: Request, state: WebState):
    """Images as absolute URLs of this server's cache (with the request's query token, if it came with one)."""
    base = str(request.base_url).rstrip("/")
    token = request.query_params.get("token")
    suffix = f"?{urlencode({'token': token})}" if token else ""

    def attach(image: FeedImage) -> Attachment:
        mime = state.cache.mime(image.sha256) or _guess_mime(image.url)
        return Attachment(f"{base}/img/{image.sha256}{suffix}", mime, image.bytes)

    return attach


def _guess_mime(url: str | None) -> str:
    path = urlsplit(url or "").path.lower()
    for ext, mime in ((".png", "image/png"), (".webp", "image/webp"), (".gif", "image/gif")):
        if path.endswith(ext):
            return mime
    return "image/jpeg"


def _caption(image: FeedImage) -> str:
    p = "?" if image.p_2d is None else f"{image.p_2d:.2f}"
    how = "labelled 2D by you" if image.routed_by == "label" else f"model v{image.model_version}"
    return f"p(2D) {p} · {how}"
