"""Issue 6, point 7: a password in the storage URL never shows.

Checked where a user or an onlooker would see it: launch progress and summary, worker logs,
error messages (unreachable or unknown database, unsupported URL), ``tuner status``, ``best``,
``trials`` and ``studies`` output, everything stored in the database, and the dashboard's API.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.study import run_tuner, tuner_cmd, write_study
from typer.testing import CliRunner

from tuner.cli import app
from tuner.storage import redact

from ._fleet import env_for, wait_for
from .conftest import PG_BIN

USER = "tuner_secret_user"
PASSWORD = "S3cretPw"
# ``tuner launch`` as in a terminal: its live progress line is drawn, not only the last frame.
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "200"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _plain(text: str) -> str:
    """``text`` without terminal escape codes, which could split a password in two."""
    return _ANSI.sub("", text)


@pytest.fixture
def secret_url(own_pg: Any) -> Iterator[str]:
    own_pg.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
    own_pg.execute(f'ALTER DATABASE "{own_pg.database}" OWNER TO {USER}')
    own_pg.execute(f"GRANT ALL ON SCHEMA public TO {USER}", own_pg.database)
    try:
        yield own_pg.url(USER, PASSWORD)
    finally:
        own_pg.execute(f'ALTER DATABASE "{own_pg.database}" OWNER TO postgres')
        own_pg.execute(f"DROP OWNED BY {USER} CASCADE", own_pg.database)
        own_pg.execute(f"DROP ROLE {USER}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_password_never_shows(
    tmp_path: Path, own_pg: Any, secret_url: str, study_name: str, record: Any
) -> None:
    assert PASSWORD in secret_url
    study_file = write_study(tmp_path, study_name, budget={"n_trials": 4})
    seen: dict[str, str] = {}

    launched = run_tuner(
        "launch",
        str(study_file),
        "--storage",
        secret_url,
        "--workers",
        "1",
        env=env_for(**TERMINAL),
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    shown = _plain(launched.stdout)
    assert f"{USER}:***@" in shown  # the URL is shown, redacted
    assert "complete 4 pruned 0 failed 0" in shown  # the progress line is in what was checked
    seen["launch output and progress"] = shown + launched.stderr
    for log in (tmp_path / "home" / "logs" / study_name).glob("*.log"):
        seen[f"log {log.name}"] = log.read_text()

    runner = CliRunner()
    for command in (
        ["status", "--format", "json"],
        ["status"],
        ["best", "--format", "json"],
        ["best"],
        ["trials", "--format", "json"],
        ["trials"],
    ):
        result = runner.invoke(
            app, [command[0], str(study_file), "--storage", secret_url, *command[1:]]
        )
        assert result.exit_code == 0, result.output
        seen[" ".join(command)] = result.stdout + result.stderr
    studies = runner.invoke(app, ["studies", "--storage", secret_url])
    assert studies.exit_code == 0 and study_name in studies.stdout
    seen["studies"] = studies.stdout
    # The password as a query parameter, which SQLAlchemy hands to the driver as well.
    query_url = f"{own_pg.url(USER)}?password={PASSWORD}"
    studies = runner.invoke(app, ["studies", "--storage", query_url])
    assert studies.exit_code == 0 and "password=***" in studies.stdout, studies.output
    seen["studies, password in the query"] = studies.stdout

    # Errors: nothing listening, a database that does not exist, a scheme tuner does not take.
    unreachable = secret_url.replace(f":{own_pg.port}/", f":{_free_port()}/")
    missing_db = secret_url.rsplit("/", 1)[0] + "/no_such_database"
    for label, url in (("unreachable", unreachable), ("missing database", missing_db)):
        result = runner.invoke(app, ["launch", str(study_file), "--storage", url])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("Error: storage ") and "***" in result.stderr
        seen[f"error {label}"] = result.stdout + result.stderr
    unreachable_query = f"{unreachable.replace(f':{PASSWORD}@', '@')}?password={PASSWORD}"
    result = runner.invoke(app, ["launch", str(study_file), "--storage", unreachable_query])
    assert result.exit_code == 2 and "password=***" in result.stderr, result.output
    seen["error unreachable, password in the query"] = result.stdout + result.stderr
    for label, url in (
        ("unsupported", f"mysql://{USER}:{PASSWORD}@db/x"),
        ("libpq keywords", f"host={own_pg.host} user={USER} password={PASSWORD}"),
    ):
        result = runner.invoke(app, ["launch", str(study_file), "--storage", url])
        assert result.exit_code == 2 and "unsupported URL" in result.stderr, result.output
        seen[f"error {label}"] = result.stderr

    # Everything stored: trial and study attributes, worker records, artifacts' metadata.
    dump = subprocess.run(
        [
            str(PG_BIN / "pg_dump"),
            f"--host={own_pg.host}",
            f"--port={own_pg.port}",
            "--username=postgres",
            own_pg.database,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "tuner:worker" in dump and "trial_user_attributes" in dump
    seen["database dump"] = dump

    # The dashboard, as a browser and its scripts see it.
    port = _free_port()
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            tuner_cmd("dashboard", "--storage", secret_url, "--port", str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env_for(),
        )
    try:
        base = f"http://127.0.0.1:{port}"
        studies_json = wait_for(lambda: _try_get(f"{base}/api/studies"), 60, "the dashboard")
        seen["dashboard /api/studies"] = studies_json
        for summary in json.loads(studies_json)["study_summaries"]:
            seen["dashboard study"] = _get(f"{base}/api/studies/{summary['study_id']}")
        seen["dashboard /api/meta"] = _get(f"{base}/api/meta")
        seen["dashboard page"] = _get(f"{base}/dashboard")
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(10)
    seen["dashboard log"] = log.read_text()

    leaks = [where for where, text in seen.items() if PASSWORD in text]
    assert not leaks, f"the password shows in: {leaks}"
    record(
        fault="password in the storage URL",
        trials_lost=0,
        places_checked=len(seen),
        leaks=0,
    )


def _try_get(url: str) -> str | None:
    try:
        return _get(url)
    except OSError:
        return None


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql+psycopg2://u:{PASSWORD}@h:5432/db",
        f"postgresql+psycopg2://u:p@ss/{PASSWORD}:x@h/db",  # '@', '/' and ':' inside it
        f"postgresql+journal://u:{PASSWORD}%40x@h/db?sslmode=require",
        f"postgresql+psycopg2://u@h/db?sslmode=require&password={PASSWORD}",
        f"postgresql+psycopg2://u@h/db?PASSWORD={PASSWORD}&application_name=w",
        f"host=h user=u password={PASSWORD} dbname=db",
        f"host=h password = '{PASSWORD} x' dbname=db",
        f"sslpassword={PASSWORD}",
        f"storage 'postgresql://a:{PASSWORD}@h/x' and 'postgresql://b:{PASSWORD}2@h/y'",
    ],
)
def test_redact_hides_every_form_of_password(text: str) -> None:
    """Whatever form the password takes in a storage setting, what tuner shows lacks it."""
    shown = redact(text)
    assert PASSWORD not in shown and "***" in shown, shown


def test_log_lines_from_any_library_are_masked() -> None:
    """A library that logs a connection string itself (SQLAlchemy, psycopg2) does not show
    the password either: the CLI's log formatter masks every line."""
    script = (
        "import logging\n"
        "from tuner.cli._common import setup_logging\n"
        "setup_logging()\n"
        "logging.getLogger('sqlalchemy.pool').warning("
        "'connection to postgresql://tuner:pr0be-secret@db:5432/tuner refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert "postgresql://tuner:***@db:5432/tuner refused" in result.stderr
    assert "pr0be-secret" not in result.stderr
