"""Running the web face: in a background thread beside the daemon (``serve_in_thread``), or in the foreground
(``serve_forever``, for `nijifeed web`). The socket is bound in the caller's thread, so a busy port or a bad
address fails at once with the OS's message, and port 0 gets a free port whose URL is known on return."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from service.config import Settings
from service.web.app import create_app

START_TIMEOUT_S = 10.0


@dataclass
class WebServer:
    url: str  # http://HOST:PORT, with 127.0.0.1 / [::1] for an all-interfaces bind
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to finish (closing the app: store connections, last-served times) and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_thread(settings: Settings, *, port: int | None = None) -> WebServer:
    """Start the web face on ``settings.web_host``:``web_port`` (or ``port``; 0 picks a free one) in a daemon
    thread and return once it accepts connections. Raises ``ConfigError`` (exposed without a token) or
    ``OSError`` (cannot bind)."""
    server, sock = _server(settings, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="nijifeed-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the web server did not start (see the log above)")
        time.sleep(0.02)
    return WebServer(_url(sock), server, thread)


def serve_forever(settings: Settings, *, on_start=None) -> None:
    """Serve in this thread until SIGINT/SIGTERM (uvicorn handles them). ``on_start(url)`` is told the URL."""
    server, sock = _server(settings, None)
    if on_start is not None:
        on_start(_url(sock))
    server.run(sockets=[sock])


def _server(settings: Settings, port: int | None) -> tuple[uvicorn.Server, socket.socket]:
    app = create_app(settings)  # refuses an exposed bind before anything listens
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=3,
                            server_header=False)
    return uvicorn.Server(config), _bind(settings.web_host, settings.web_port if port is None else port)


def _bind(host: str, port: int) -> socket.socket:
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
