"""WSGI middleware that makes optuna-dashboard safe to serve: read-only mode, token, Host check.

optuna-dashboard's HTTP API deletes studies, renames them, writes trial values, notes and
artifacts, with no authentication. tuner wraps the unmodified app in these layers (outermost
first):

* :class:`LoopbackHostGuard`, when there is no token: the ``Host`` header must name a
  loopback address, so a web page cannot reach the dashboard through DNS rebinding;
* :class:`TokenGuard`, when there is a token: every request must carry it;
* :class:`ReadOnlyGuard`, unless writes are allowed: only GET and HEAD reach the app.

Refusals are JSON ``{"reason": ...}`` like optuna-dashboard's own errors, so its front end
shows the reason in its error banner.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

TOKEN_QUERY = "token"
TOKEN_COOKIE = "tuner_dashboard"
# Methods optuna-dashboard answers without changing anything. Every POST, PUT and DELETE it
# defines writes (create/rename/delete study, tell trial, notes, artifacts, preferences, RDB
# schema upgrade); its only read-only POSTs are the LLM helpers, which tuner never enables.
SAFE_METHODS = frozenset({"GET", "HEAD"})


def _respond(
    start_response: StartResponse,
    status: str,
    reason: str,
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    body = json.dumps({"reason": reason}).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [body]


class ReadOnlyGuard:
    """Refuse every request that could change the study storage, with 403 and the reason."""

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method in SAFE_METHODS:
            return self._app(environ, start_response)
        logger.info("refused %s %s: read-only mode", method, environ.get("PATH_INFO", ""))
        return _respond(
            start_response,
            "403 Forbidden",
            f"tuner dashboard is in read-only mode: {method} requests are refused, so studies "
            "and trials cannot be deleted or changed from the browser. To allow it, restart "
            "the dashboard with --allow-writes.",
        )


def _cookie_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the cookie never holds the token."""
    return hmac.new(token.encode(), b"tuner-dashboard-cookie", hashlib.sha256).hexdigest()


class TokenGuard:
    """Require the dashboard token on every request.

    Accepted, in this order: ``?token=<token>`` in the URL (answered with a redirect to the
    same URL without it, setting an HttpOnly SameSite=Lax cookie, so a browser needs the link
    once); ``Authorization: Bearer <token>``; HTTP Basic auth with any user name and the token
    as password (a browser without the cookie gets a login prompt); the cookie. Comparisons
    are constant-time.
    """

    def __init__(self, app: WSGIApplication, token: str) -> None:
        self._app = app
        self._token = token.encode()
        self._cookie = _cookie_value(token).encode()

    def _matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)

    def _authorized(self, environ: WSGIEnvironment) -> bool:
        auth = str(environ.get("HTTP_AUTHORIZATION", ""))
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and self._matches(credentials.strip()):
            return True
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            if self._matches(decoded.partition(":")[2]):
                return True
        try:
            cookie = SimpleCookie(str(environ.get("HTTP_COOKIE", "")))
        except CookieError:
            return False
        morsel = cookie.get(TOKEN_COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self._cookie)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
        given = [v for k, v in query if k == TOKEN_QUERY]
        if given:
            if not self._matches(given[-1]):
                return self._refuse(start_response, "the token in the URL is wrong")
            rest = urlencode([(k, v) for k, v in query if k != TOKEN_QUERY])
            location = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "/"))
            cookie = f"{TOKEN_COOKIE}={self._cookie.decode()}; Path=/; HttpOnly; SameSite=Lax"
            start_response(
                "303 See Other",
                [
                    ("Location", location + (f"?{rest}" if rest else "")),
                    ("Set-Cookie", cookie),
                    ("Content-Length", "0"),
                    ("Cache-Control", "no-store"),
                ],
            )
            return [b""]
        if self._authorized(environ):
            return self._app(environ, start_response)
        return self._refuse(start_response, "this dashboard requires its token")

    @staticmethod
    def _refuse(start_response: StartResponse, why: str) -> list[bytes]:
        return _respond(
            start_response,
            "401 Unauthorized",
            f"{why}: open the dashboard URL with ?token=<token>, send 'Authorization: Bearer "
            "<token>', or log in with any user name and the token as password.",
            [("WWW-Authenticate", 'Basic realm="tuner dashboard", charset="UTF-8"')],
        )


def is_loopback_name(name: str) -> bool:
    """Whether a host name or literal address names this machine only (``localhost``,
    ``127.0.0.0/8``, ``::1``). Names are not resolved."""
    name = name.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_header_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8080
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class LoopbackHostGuard:
    """Refuse requests whose ``Host`` header is not a loopback name (DNS rebinding guard).

    A page on ``evil.example`` whose name is re-pointed at 127.0.0.1 sends ``Host:
    evil.example``; without this check it could read (or, with --allow-writes, delete) the
    studies of a dashboard that has no token.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        host = str(environ.get("HTTP_HOST", ""))
        if not host or is_loopback_name(_host_header_name(host)):
            return self._app(environ, start_response)
        logger.warning("refused a request for host %r: no token is set", host)
        return _respond(
            start_response,
            "403 Forbidden",
            f"this dashboard has no token, so it answers only requests addressed to "
            f"localhost or 127.0.0.1, not {host!r}. Open it through localhost, or set "
            "TUNER_DASHBOARD_TOKEN to serve it under another name.",
        )


def guard(
    app: WSGIApplication, *, allow_writes: bool, token: str | None
) -> Callable[[WSGIEnvironment, StartResponse], Any]:
    """Wrap ``app`` in the layers the module docstring lists."""
    wrapped: WSGIApplication = app if allow_writes else ReadOnlyGuard(app)
    if token is not None:
        return TokenGuard(wrapped, token)
    return LoopbackHostGuard(wrapped)
