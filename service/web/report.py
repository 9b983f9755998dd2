"""`/report` and `/report.svg`: the active-learning report (feed precision from audit labels, review load, model
history), rendered by ``service.review.page`` and served behind the same token gate and headers as the feed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from service.review.page import render_report_page, report_svg


async def report(request: Request) -> HTMLResponse:
    state = request.app.state.web
    return HTMLResponse(render_report_page(state.store(), state.settings))


async def report_plot(request: Request) -> Response:
    return Response(report_svg(request.app.state.web.store()), media_type="image/svg+xml")

