"""``create_app``: the web face's routes, middleware and shared state, wired from Settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from service.config import Settings
from service.web import health, images, pages, report
from service.web.security import HostCheck, SecurityHeaders, TokenGate, check_exposure, content_security_policy
from service.web.state import StoreLeases, WebState


def create_app(settings: Settings) -> Starlette:
    """The ASGI app with every route of the web face. Raises ``ConfigError`` when bound beyond loopback without
    ``web_token``. Middleware, outermost first: the safe headers, the Host check, the store connection leased to
    each request, then the token gate when a token is set.

    Handlers reach the shared state as ``request.app.state.web`` (a ``WebState``: ``.settings``, ``.store()``
    (the request's store connection, from a small pool), ``.cache``), and render with ``service.web.pages.templates``.
    """
    check_exposure(settings)
    state = WebState(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    routes: list[BaseRoute] = [
        Route("/", pages.index, name="index"),
        Route("/feed.atom", pages.atom, name="atom"),
        Route("/feed.json", pages.json_feed, name="json_feed"),
        Route("/img/{sha256}", images.image, name="image"),
        Route("/thumb/{sha256}", images.thumbnail, name="thumb"),
        Route("/healthz", health.healthz, name="healthz"),
        Route("/readyz", health.readyz, name="readyz"),
        Route("/metrics", health.metrics, name="metrics"),
        Route("/report", report.report, name="report"),
        Route("/report.svg", report.report_plot, name="report_svg"),
        Mount("/static", StaticFiles(directory=str(files("service.web") / "static")), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders, csp=content_security_policy(settings)),
        Middleware(HostCheck, web_host=settings.web_host, web_port=settings.web_port,
                   allowed=settings.web_allowed_hosts),
        Middleware(StoreLeases, state=state),
    ]
    if settings.web_token is not None and settings.web_token.get_secret_value().strip():
        middleware.append(Middleware(TokenGate, token=settings.web_token.get_secret_value().strip()))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.web = state
    return app
