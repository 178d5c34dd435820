"""Serve WSGI apps on loopback in threads and run until SIGTERM/SIGINT.

Used inside the sandbox's own background processes, never by the CLI process.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from heatgen.sandbox.settings import HOST

LOG = logging.getLogger(__name__)

# Exit codes of the background processes; the parent maps them to messages.
EXIT_PORT_BUSY = 98
EXIT_STARTUP_FAILED = 70


@dataclass
class LoopbackServer:
    """One WSGI app on ``127.0.0.1:port``, served by cheroot worker threads."""

    name: str
    port: int
    app: Any
    threads: int = 8
    host: str = HOST  # the pool's bridge address, for what sandbox hosts must reach

    def __post_init__(self) -> None:
        from cheroot import wsgi

        self._server = wsgi.Server((self.host, self.port), self.app, numthreads=self.threads,
                                   server_name=self.name)
        self._thread: threading.Thread | None = None

    def bind(self) -> None:
        """Bind and listen; raises OSError (EADDRINUSE) if the port is taken."""
        self._server.prepare()

    def serve_in_thread(self) -> None:
        self._thread = threading.Thread(target=self._server.serve, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.stop()


def bind_all(servers: list[LoopbackServer]) -> None:
    """Bind every server first, so a busy port fails before anything is served."""
    for server in servers:
        try:
            server.bind()
        except OSError as error:
            LOG.error("cannot listen on %s:%s for %s: %s", HOST, server.port, server.name, error)
            os._exit(EXIT_PORT_BUSY)


def run_until_signalled(
    servers: list[LoopbackServer], on_stop: Callable[[], None] = lambda: None,
    stop_timeout: float = 15.0,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop servers, run ``on_stop`` and exit.

    Ends with ``os._exit`` so a library thread that ignores shutdown cannot keep the
    process (and its PID file) alive.
    """
    stop = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    for server in servers:
        server.serve_in_thread()
    LOG.info("serving %s", ", ".join(f"{s.name} on {HOST}:{s.port}" for s in servers))
    while not stop.wait(1.0):
        pass
    LOG.info("stopping")
    finisher = threading.Thread(target=_finish, args=(servers, on_stop), daemon=True)
    finisher.start()
    finisher.join(stop_timeout)
    logging.shutdown()
    os._exit(0)


def _finish(servers: list[LoopbackServer], on_stop: Callable[[], None]) -> None:
    for server in servers:
        try:
            server.stop()
        except Exception:
            LOG.exception("stopping %s", server.name)
    try:
        on_stop()
    except Exception:
        LOG.exception("stopping services")
