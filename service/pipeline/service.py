"""The running service, composed from Settings: the one factory that `nijifeed run` and `nijifeed demo` call.

``Service.from_settings(settings)`` builds the parts (the extractor, the cycle runner on the configured source,
the forwarders, the retrain job) without touching the network, the data dir's lock or a port; ``run()`` takes
the lock (one daemon per data dir), serves the web face, and polls on the schedule (with the forwarding and
retrain jobs beside the polls) until SIGTERM/SIGINT or ``max_cycles``; ``close()`` gives everything back, in the
spirit of huey's ``create_consumer`` and ``Consumer.run``::

    with Service.from_settings(settings) as service:
        service.run(on_start=lambda s: print(f"serving {s.url}/"))
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from types import FrameType
from typing import Any

from service.config import Settings
from service.daemon import Daemon, single_instance
from service.errors import InputError
from service.features import FeatureExtractor, make_extractor
from service.pipeline.build import CycleRunner, ForwardRunner, RetrainRunner
from service.pipeline.cycle import CycleSummary
from service.web.server import WebServer, serve_in_thread

SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class Service:
    """The daemon: cycles on the poll interval, the web face, forwarding and retraining jobs, the lock."""

    def __init__(
        self,
        settings: Settings,
        extractor: FeatureExtractor,
        *,
        max_cycles: int | None = None,
        after_cycle: Callable[[], object] | None = None,
        any_port: bool = False,
    ) -> None:
        self.settings = settings
        self.extractor = extractor
        self.any_port = any_port
        self.after_cycle = after_cycle
        self.stop = threading.Event()  # shared by the scheduler and the source, so backoff sleeps end on shutdown
        self.runner = CycleRunner.from_settings(settings, extractor, stop=self.stop)
        self.forwarder = ForwardRunner(settings)
        self.retrainer = RetrainRunner(settings, extractor)
        self.daemon = Daemon(self._cycle, interval=settings.poll_interval, jitter=settings.poll_jitter,
                             max_cycles=max_cycles, stop=self.stop)
        if self.forwarder:
            self.daemon.every(settings.forward_interval, self.forwarder, "forward")
        if self.retrainer:
            self.daemon.every(settings.poll_interval, self.retrainer, "retrain")  # checks a count; trains when due
        self.web: WebServer | None = None
        self._held = ExitStack()  # the lock and the web server, given back by close()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        extractor: FeatureExtractor | None = None,
        max_cycles: int | None = None,
        after_cycle: Callable[[], object] | None = None,
        any_port: bool = False,
    ) -> Service:
        """The service for ``settings``. ``extractor``: one already loaded (else built from the settings);
        ``max_cycles``: stop after that many polls (None: until a signal); ``after_cycle``: called after each
        poll (the demo publishes new sandbox posts); ``any_port``: serve on a free port when the configured one
        is taken. Raises ``ConfigError`` or ``SourceError`` for settings that cannot work."""
        return cls(settings, extractor if extractor is not None else make_extractor(settings),
                   max_cycles=max_cycles, after_cycle=after_cycle, any_port=any_port)

    @property
    def url(self) -> str:
        """The web face's base URL (known once ``run`` has started it)."""
        if self.web is None:
            raise RuntimeError("the service is not running")
        return self.web.url

    def run(self, on_start: Callable[[Service], object] | None = None) -> None:
        """Take the data dir's lock, serve the web face, then poll until stopped; ``on_start(self)`` is called
        once everything listens. Raises ``AlreadyRunning`` when another daemon holds the lock. SIGTERM and SIGINT
        stop it (their previous handlers are put back on return)."""
        self._held.enter_context(single_instance(self.settings.lock_path))
        self.forwarder.switched_on()  # before the first poll: what it brings into the feed is forwarded too
        self.web = self._start_web()
        self._held.callback(self._stop_web)
        if on_start is not None:
            on_start(self)
        previous = self._install_signal_handlers()
        try:
            self.daemon.start()
            self.daemon.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def close(self) -> None:
        """Stop polling, stop the web face, close the store connections and release the lock."""
        self.stop.set()
        if self.daemon.scheduler.running:
            self.daemon.scheduler.shutdown(wait=True)
        try:
            self.runner.close()
            self.forwarder.close()
            self.retrainer.close()
        finally:
            self._held.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cycle(self, stop: threading.Event, fetch: bool) -> CycleSummary:
        summary = self.runner(stop, fetch)  # the daemon logs its one-line summary
        if self.after_cycle is not None:
            self.after_cycle()
        return summary

    def _start_web(self) -> WebServer:
        settings = self.settings
        try:
            return serve_in_thread(settings)
        except OSError as exc:
            if not self.any_port:
                where = f"{settings.web_host}:{settings.web_port}"
                raise InputError(f"cannot serve the web page on {where}: {exc}") from None
            return serve_in_thread(settings, port=0)

    def _stop_web(self) -> None:
        if self.web is not None:
            self.web.stop()

    def _install_signal_handlers(self) -> dict[int, SignalHandler]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # signals reach the main thread only; a service run elsewhere is stopped with ``stop``
        signals = (signal.SIGTERM, signal.SIGINT)
        previous: dict[int, SignalHandler] = {signum: signal.getsignal(signum) for signum in signals}
        self.daemon.install_signal_handlers()
        return previous
