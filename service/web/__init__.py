"""The web face: the 2D-only timeline page, Atom and JSON feeds, cached images, health, metrics and the report.

``create_app(settings)`` builds the Starlette app; ``serve_in_thread(settings)`` runs it beside the daemon;
``nijifeed web`` runs it alone. It only reads the store (and records when cached images were served).
"""

from __future__ import annotations

from service.web.app import create_app
from service.web.server import WebServer, serve_in_thread

__all__ = ["WebServer", "create_app", "serve_in_thread"]
