"""Serve optuna-dashboard over a study storage, safely: the app, the server, ``serve``.

The app is optuna-dashboard's own WSGI app (:func:`optuna_dashboard.wsgi`), unmodified,
inside tuner's guards (:mod:`tuner.dashboard._guard`). The server is the standard library's
WSGI server with a thread per request, which is enough for the handful of people who watch a
search; :func:`make_app` also suits gunicorn or uWSGI.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna_dashboard
from optuna.artifacts._protocol import ArtifactStore
from optuna.storages import BaseStorage

from tuner.dashboard._guard import guard, is_loopback_name
from tuner.dashboard._publish import FigureRefresher
from tuner.errors import TunerError

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

logger = logging.getLogger(__name__)

TOKEN_ENV = "TUNER_DASHBOARD_TOKEN"
MIN_TOKEN_LENGTH = 12


class DashboardError(TunerError):
    """The dashboard cannot be served as asked (e.g. its port is taken)."""


class InsecureBindError(DashboardError):
    """The dashboard would be reachable from other machines without a token."""


def check_token(token: str | None) -> None:
    """Refuse a token too short to stand in for a password.

    Raises:
        DashboardError: ``token`` is shorter than ``MIN_TOKEN_LENGTH`` characters.
    """
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise DashboardError(
            f"dashboard: {TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters, got "
            f"{len(token)}; generate one with: python -c 'import secrets; "
            "print(secrets.token_urlsafe(24))'"
        )


def is_loopback_host(host: str) -> bool:
    """Whether binding to ``host`` keeps the dashboard on this machine.

    ``localhost`` and loopback addresses are; ``0.0.0.0``, ``::`` and "" (all interfaces) are
    not. Another name counts as loopback only if every address it resolves to is loopback.
    """
    if is_loopback_name(host):
        return True
    if host.strip() in ("", "0.0.0.0", "::", "[::]"):
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(is_loopback_name(str(info[4][0])) for info in infos)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token.

    Raises:
        InsecureBindError: ``host`` is not a loopback address and ``token`` is None.
        DashboardError: the token is too short.
    """
    check_token(token)
    if token is None and not is_loopback_host(host):
        raise InsecureBindError(
            f"dashboard: binding to {host!r} makes it reachable from other machines, and "
            f"optuna-dashboard has no login of its own; set {TOKEN_ENV} to a secret token, "
            "or bind to 127.0.0.1"
        )


def make_app(
    storage: BaseStorage,
    artifact_store: ArtifactStore | None = None,
    *,
    allow_writes: bool = False,
    token: str | None = None,
) -> WSGIApplication:
    """optuna-dashboard's WSGI app for ``storage``, read-only unless ``allow_writes``.

    Args:
        storage: the study storage (RDBStorage, JournalStorage, ...).
        artifact_store: where trial artifacts live; the dashboard lists and serves them.
        allow_writes: let the browser delete studies, tell trials, edit notes, upload files.
        token: if set, every request must carry it (see :class:`tuner.dashboard._guard.
            TokenGuard`); if None, only requests addressed to a loopback name are answered.

    Raises:
        DashboardError: the token is too short.
    """
    check_token(token)
    app = optuna_dashboard.wsgi(storage, artifact_store=artifact_store)
    return guard(app, allow_writes=allow_writes, token=token)


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the debug log, not to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class DashboardServer:
    """optuna-dashboard over ``storage`` on ``host:port``, with tuner's figures kept fresh.

    Use :meth:`serve_forever` to block, or :meth:`start` to serve from a background thread
    (tests, notebooks); :meth:`close` stops both the server and the figure refresher. Also a
    context manager. ``port=0`` picks a free port; :attr:`url` tells which.

    Raises:
        InsecureBindError: non-loopback ``host`` without ``token``.
        DashboardError: the token is too short, or the address cannot be bound.
    """

    def __init__(
        self,
        storage: BaseStorage,
        artifact_store: ArtifactStore | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        allow_writes: bool = False,
        token: str | None = None,
        refresh_seconds: float | None = 5.0,
        max_curves: int = 200,
    ) -> None:
        check_bind(host, token)
        if refresh_seconds is not None and refresh_seconds <= 0:
            raise DashboardError(f"dashboard: refresh must be > 0 seconds, got {refresh_seconds}")
        app = make_app(storage, artifact_store, allow_writes=allow_writes, token=token)
        server_class = _ThreadingServer6 if ":" in host.strip("[]") else _ThreadingServer
        try:
            self._httpd = make_server(
                host.strip("[]"), port, app, server_class=server_class, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise DashboardError(
                f"dashboard: cannot listen on {_url_host(host)}:{port}: {exc.strerror or exc}"
                + ("; pass another --port" if exc.errno == errno.EADDRINUSE else "")
            ) from None
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self.allow_writes = allow_writes
        self.refresher = (
            None
            if refresh_seconds is None
            else FigureRefresher(storage, interval_s=refresh_seconds, max_curves=max_curves)
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where a browser opens the dashboard (without the token)."""
        return f"http://{_url_host(self.host)}:{self.port}/dashboard"

    def _start_refresher(self) -> None:
        if self.refresher is not None:
            self.refresher.start()

    def start(self) -> None:
        """Serve from a daemon thread and return at once."""
        self._start_refresher()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="tuner-dashboard", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve until :meth:`close` or KeyboardInterrupt (which propagates)."""
        self._start_refresher()
        self._httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
        self._httpd.server_close()
        if self.refresher is not None:
            self.refresher.stop()

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    storage: BaseStorage,
    artifact_store: ArtifactStore | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    allow_writes: bool = False,
    token: str | None = None,
    refresh_seconds: float | None = 5.0,
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C raises KeyboardInterrupt to the caller).

    Logs the URL at INFO. The storage URL is never logged: this function never sees it.

    Args:
        storage: the study storage.
        artifact_store: the artifact store; trial artifacts are listed on trial pages.
        host: the address to bind; anything but loopback requires ``token``.
        port: the TCP port; 0 picks a free one.
        allow_writes: let the browser change and delete studies (refused by default).
        token: the secret every request must carry (the CLI reads ``TUNER_DASHBOARD_TOKEN``).
        refresh_seconds: how often the pruning and fleet figures are re-drawn; None disables
            them (for a database role that may not write).

    Raises:
        InsecureBindError: non-loopback ``host`` without ``token``.
        DashboardError: the token is too short, or the address cannot be bound.
    """
    with DashboardServer(
        storage,
        artifact_store,
        host=host,
        port=port,
        allow_writes=allow_writes,
        token=token,
        refresh_seconds=refresh_seconds,
    ) as server:
        mode = "writes allowed" if allow_writes else "read-only"
        auth = ", token required" if token is not None else ""
        logger.info("tuner dashboard on %s (%s%s)", server.url, mode, auth)
        server.serve_forever()
