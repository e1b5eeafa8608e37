"""Fixtures for the reliability suite: a PostgreSQL cluster the tests own, and measurements.

The cluster is started by pytest-postgresql's process fixture with the machine's PostgreSQL
binaries, through ``pg_ctl.sh`` (which, as root, runs them as an unprivileged user), so a test
can stop and start the server under a running fleet. Each test gets a fresh database on it.

Every test records what it measured (seconds to recover, trials lost); the figures are written
to ``$TUNER_RELIABILITY_OUT`` (default: ``reliability.json`` in pytest's base temp folder) and
are the numbers in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import platform
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from pytest_postgresql import factories

PG_BIN = Path(os.environ.get("TUNER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_CTL = Path(__file__).with_name("pg_ctl.sh")
PG_CTL.chmod(PG_CTL.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

pg_server = factories.postgresql_proc(
    executable=str(PG_CTL),
    host="127.0.0.1",
    port=None,
    user="postgres",
    # 8 workers hold up to ~8 connections each; the default of 100 is too tight.
    postgres_options="-c max_connections=300",
)


class OwnPostgres:
    """A database on the cluster this test session owns, and the server's off switch."""

    def __init__(self, executor: Any, database: str) -> None:
        self.executor = executor
        self.database = database
        self.host = executor.host
        self.port = int(executor.port)
        self.stopped = False

    def url(self, user: str = "postgres", password: str | None = None) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql+psycopg2://{user}{secret}@{self.host}:{self.port}/{self.database}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (autocommit) and return its rows, if any."""
        connection = psycopg2.connect(
            host=self.host, port=self.port, user="postgres", dbname=database
        )
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def tables(self) -> list[str]:
        """The tables in this database's public schema (Optuna's, tuner's artifacts)."""
        rows = self.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
            self.database,
        )
        return sorted(r[0] for r in rows)

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``: every session is cut)."""
        self.stopped = True
        self.executor.stop()

    def start(self, timeout: float = 60.0) -> None:
        """Start the server again and wait until it accepts connections."""
        self.executor.start()
        self.stopped = False
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.execute("SELECT 1")
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.fixture
def own_pg(pg_server: Any) -> Iterator[OwnPostgres]:
    """A fresh database on the test-owned PostgreSQL server; dropped afterwards."""
    name = f"rel_{uuid.uuid4().hex[:10]}"
    server = OwnPostgres(pg_server, name)
    server.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server
    finally:
        if server.stopped:
            server.start()
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_MEASURED: dict[str, Any] = {}


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Any:
    """``record(key=value, ...)`` stores figures under this test's name for RELIABILITY.md."""

    def store(**figures: Any) -> None:
        _MEASURED.setdefault(request.node.name, {}).update(figures)

    return store


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _MEASURED:
        return
    out = os.environ.get("TUNER_RELIABILITY_OUT")
    factory = getattr(session.config, "_tmp_path_factory", None)
    if out:
        path = Path(out)
    elif factory is not None:
        path = factory.getbasetemp() / "reliability.json"
    else:
        return
    document = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.platform()})",
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tests": _MEASURED,
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True))
    session.config._reliability_out = path  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    path = getattr(config, "_reliability_out", None)
    if path is not None:
        terminalreporter.write_line(f"reliability measurements: {path}")
