"""Safe by default: read-only, loopback-only without a token, the token checked when set.

These call the guarded WSGI app in-process; the browser tests check the same through HTTP.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from tuner.dashboard import (
    DashboardError,
    DashboardServer,
    InsecureBindError,
    check_bind,
    is_loopback_host,
    make_app,
)
from tuner.errors import TunerError

TOKEN = "correct-horse-battery-staple"


def call(
    app: Any, method: str, path: str, *, query: str = "", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request through a WSGI app: (status code, headers, body)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.input": io.BytesIO(b"{}"),
        "CONTENT_LENGTH": "2",
        "CONTENT_TYPE": "application/json",
    }
    for name, value in (headers or {}).items():
        environ[f"HTTP_{name.upper().replace('-', '_')}"] = value
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], *_: Any) -> None:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(response_headers)

    chunks: Iterable[bytes] = app(environ, start_response)
    body = b"".join(chunks)
    return seen["status"], seen["headers"], body


@pytest.fixture
def storage(tmp_path: Path) -> optuna.storages.BaseStorage:
    backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log"))
    storage = optuna.storages.JournalStorage(backend)
    optuna.create_study(storage=storage, study_name="kept")
    return storage


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/studies/0"),
        ("POST", "/api/studies"),
        ("POST", "/api/studies/0/rename"),
        ("POST", "/api/trials/0/tell"),
        ("PUT", "/api/studies/0/note"),
        ("PATCH", "/api/studies/0"),
        ("POST", "/incompatible-rdb-schema"),
    ],
)
def test_read_only_refuses_every_write(
    storage: optuna.storages.BaseStorage, method: str, path: str
) -> None:
    status, headers, body = call(make_app(storage), method, path)
    assert status == 403 and headers["Content-Type"] == "application/json"
    reason = json.loads(body)["reason"]
    assert "read-only mode" in reason and "--allow-writes" in reason
    assert [s.study_name for s in storage.get_all_studies()] == ["kept"]


def test_read_only_still_serves_reads(storage: optuna.storages.BaseStorage) -> None:
    app = make_app(storage)
    status, _, body = call(app, "GET", "/api/studies")
    assert status == 200 and json.loads(body)["study_summaries"][0]["study_name"] == "kept"
    assert call(app, "GET", "/dashboard")[0] == 200


def test_writes_pass_when_allowed(storage: optuna.storages.BaseStorage) -> None:
    status, _, _ = call(make_app(storage, allow_writes=True), "DELETE", "/api/studies/0")
    assert status == 204 and storage.get_all_studies() == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10"])
def test_binding_beyond_loopback_needs_a_token(host: str) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(InsecureBindError, match="TUNER_DASHBOARD_TOKEN") as raised:
        check_bind(host, None)
    assert isinstance(raised.value, TunerError)
    check_bind(host, TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback_host(host)
    check_bind(host, None)


def test_server_refuses_to_start_exposed_without_token(
    storage: optuna.storages.BaseStorage,
) -> None:
    with pytest.raises(InsecureBindError):
        DashboardServer(storage, host="0.0.0.0", port=0, refresh_seconds=None)
    with pytest.raises(DashboardError, match="at least 12 characters"):
        DashboardServer(storage, port=0, token="short", refresh_seconds=None)


def test_token_is_required_and_checked(storage: optuna.storages.BaseStorage) -> None:
    app = make_app(storage, token=TOKEN)
    status, headers, body = call(app, "GET", "/api/studies")
    assert status == 401 and "Basic" in headers["WWW-Authenticate"]
    assert "requires its token" in json.loads(body)["reason"]
    assert call(app, "GET", "/api/studies", headers={"Authorization": "Bearer nope"})[0] == 401
    assert call(app, "GET", "/api/studies", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    assert call(app, "GET", "/api/studies", headers={"Authorization": f"Basic {basic}"})[0] == 200
    wrong = base64.b64encode(b"anyone:guess").decode()
    assert call(app, "GET", "/api/studies", headers={"Authorization": f"Basic {wrong}"})[0] == 401


def test_token_link_sets_a_cookie_and_drops_the_token(storage: optuna.storages.BaseStorage) -> None:
    app = make_app(storage, token=TOKEN)
    status, headers, _ = call(app, "GET", "/dashboard", query=f"token={TOKEN}&x=1")
    assert status == 303 and headers["Location"] == "/dashboard?x=1"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and TOKEN not in cookie
    pair = cookie.split(";", 1)[0]
    assert call(app, "GET", "/api/studies", headers={"Cookie": pair})[0] == 200
    forged = pair.split("=", 1)[0] + "=0123abcd"
    assert call(app, "GET", "/api/studies", headers={"Cookie": forged})[0] == 401
    assert call(app, "GET", "/dashboard", query="token=wrong")[0] == 401


def test_token_does_not_lift_read_only(storage: optuna.storages.BaseStorage) -> None:
    app = make_app(storage, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert call(app, "DELETE", "/api/studies/0", headers=auth)[0] == 403


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:8080", 200),
        ("127.0.0.1", 200),
        ("[::1]:8080", 200),
        ("evil.example", 403),
        ("evil.example:8080", 403),
        ("10.0.0.5:8080", 403),
    ],
)
def test_without_token_only_loopback_host_names_are_answered(
    storage: optuna.storages.BaseStorage, host: str, status: int
) -> None:
    got, _, body = call(make_app(storage), "GET", "/api/studies", headers={"Host": host})
    assert got == status
    if status == 403:
        assert "TUNER_DASHBOARD_TOKEN" in json.loads(body)["reason"]
