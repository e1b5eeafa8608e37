"""Reading never writes: the read commands create nothing, and a read-only role can watch.

What a user relies on: ``tuner status``, ``best``, ``trials``, ``report``, ``studies`` and
``dashboard`` pointed at a storage that holds nothing yet (a mistyped URL, a study not yet
launched) say so in one line, exit 2, and leave the storage exactly as it was: no journal
file or folder, no tables. And a database role allowed only to read (``GRANT SELECT``) can
serve the dashboard, which then stops refreshing tuner's figures with one warning.
"""

from __future__ import annotations

import errno
import json
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import psycopg2
import pytest
import sqlalchemy as sa
from helpers.study import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    admin_sql,
    pg_url,
    scratch_database,
    tuner_cmd,
    write_study,
)
from optuna.artifacts.exceptions import ArtifactNotFound
from typer.testing import CliRunner

from tuner.cli import app
from tuner.dashboard import FigureRefresher
from tuner.dashboard._publish import write_refusal
from tuner.storage import default_url, open_artifact_store, open_storage, redact
from tuner.storage._pg_pending import publish_pending

runner = CliRunner()
PASSWORD = "hunter2"  # trust auth ignores it; it must never be shown
KINDS = ["embedded", "postgresql", "postgresql+journal", "sqlite"]
TRIALS = 3


def tables(database: str) -> list[str]:
    """Every table and view in the database outside PostgreSQL's own catalogs."""
    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables"
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(params=KINDS)
def empty_storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[list[str], Callable[[], object]]]:
    """For a storage that holds nothing: (the ``--storage`` arguments, none for the embedded
    default; what the storage's whole state is now: its tables, the files under tmp_path)."""
    kind = request.param
    if kind == "embedded":
        yield [], lambda: files(tmp_path)
    elif kind == "sqlite":
        yield ["--storage", f"sqlite:///{tmp_path / 'tuner.db'}"], lambda: files(tmp_path)
    else:
        with scratch_database("tuner_empty") as name:
            url = pg_url(name, password=PASSWORD)
            if kind == "postgresql+journal":
                url = url.replace("postgresql+psycopg2://", "postgresql+journal://")
            yield ["--storage", url], lambda: (tables(name), files(tmp_path))


def test_reading_an_empty_storage_is_one_error_and_creates_nothing(
    empty_storage: tuple[list[str], Callable[[], object]], tmp_path: Path
) -> None:
    storage_args, state = empty_storage
    study_file = write_study(tmp_path, "not-launched")
    before = state()
    assert not (tmp_path / "home").exists()
    shown = redact(storage_args[1] if storage_args else default_url())
    assert PASSWORD not in shown
    nothing = f"storage {shown}: no studies stored there yet"

    result = runner.invoke(app, ["studies", *storage_args])
    assert (result.exit_code, result.output) == (2, f"Error: {nothing}\n")
    for command in (["status"], ["status", "--format", "json"], ["best"], ["trials"], ["report"]):
        result = runner.invoke(app, [command[0], str(study_file), *command[1:], *storage_args])
        assert (result.exit_code, result.output) == (
            2,
            f"Error: no study 'not-launched': {nothing}\n",
        ), command
    # The dashboard as a real process: it must fail before it serves anything.
    dashboard = subprocess.run(
        tuner_cmd("dashboard", *storage_args, "--port", str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (dashboard.returncode, dashboard.stderr) == (2, f"Error: {nothing}\n")

    assert state() == before, "the storage is exactly as it was"
    assert not (tmp_path / "home").exists(), "no embedded default created"
    assert not (tmp_path / "report.html").exists()


def test_launch_still_creates_the_storage(tmp_path: Path) -> None:
    """Writers are unchanged: opening to write creates the journal file and its folder."""
    url = f"journal://{tmp_path / 'new' / 'journal.log'}"
    optuna.create_study(storage=open_storage(url), study_name="created")
    assert (tmp_path / "new" / "journal.log").stat().st_size > 0
    assert [s.study_name for s in open_storage(url, read_only=True).get_all_studies()] == [
        "created"
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module", params=["postgresql", "postgresql+journal"])
def read_only_role(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """(URL as a role that may only read, the database, the stored study's name): a study with
    learning curves, so the dashboard has a pruning figure to publish; no artifact was ever
    written, so the artifact table does not exist."""
    role = f"tuner_ro_{uuid.uuid4().hex[:8]}"
    with scratch_database("tuner_ro") as name:
        owner_url = pg_url(name)
        if request.param == "postgresql+journal":
            owner_url = owner_url.replace("postgresql+psycopg2://", "postgresql+journal://")
        study = optuna.create_study(storage=open_storage(owner_url), study_name="watched")
        for _ in range(TRIALS):
            trial = study.ask()
            x = trial.suggest_float("x", 0.0, 1.0)
            trial.report(x, 0)
            study.tell(trial, x / 2)
        publish_pending(owner_url)  # postgresql+journal:// batches writes
        admin_sql(f"CREATE ROLE {role} LOGIN")
        try:
            admin_sql(f'GRANT CONNECT ON DATABASE "{name}" TO {role}')
            admin_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}", dbname=name)
            yield owner_url.replace(f"{PG_USER}@", f"{role}:{PASSWORD}@"), name, "watched"
        finally:  # the database first: its CONNECT grant keeps the role from being dropped
            admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin_sql(f"DROP ROLE IF EXISTS {role}")


def test_a_read_only_role_runs_the_read_commands(read_only_role: tuple[str, str, str]) -> None:
    url, database, study_name = read_only_role
    before = tables(database)
    result = runner.invoke(app, ["studies", "--storage", url], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f" {study_name} " in result.output and PASSWORD not in result.output
    assert tables(database) == before


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("publish", [True, False], ids=["publish", "no-publish"])
def test_a_read_only_role_serves_the_dashboard(
    read_only_role: tuple[str, str, str], tmp_path: Path, publish: bool
) -> None:
    url, database, study_name = read_only_role
    before = tables(database)
    port = free_port()
    log = tmp_path / "dashboard.log"
    args = ["dashboard", "--storage", url, "--port", str(port)]
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            tuner_cmd(*args, *([] if publish else ["--no-publish"])),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                status, body = get(f"{base}/api/studies")
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert status == 200, body
        (study,) = json.loads(body)["study_summaries"]
        assert study["study_name"] == study_name
        if publish:  # the refresher tried, was refused, and said so once
            while "refuses writes" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        status, body = get(f"{base}/api/studies/{study['study_id']}")
        assert status == 200, body
        assert len(json.loads(body)["trials"]) == TRIALS
        assert process.poll() is None, "still serving after the refusal"
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text and PASSWORD not in text
    assert text.count("refuses writes") == (1 if publish else 0), text
    assert tables(database) == before, "nothing created, not even the artifact table"


def test_the_figure_refresher_stops_when_writes_are_refused(
    read_only_role: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    url, _, _ = read_only_role
    refresher = FigureRefresher(open_storage(url, read_only=True), interval_s=0.05)
    refresher.start()
    try:
        assert refresher.wait_for_first_pass(timeout=30)
        time.sleep(0.5)  # ten more intervals: it must not try again
        assert refresher.passes == 1
        assert refresher.refused is not None and "permission denied" in refresher.refused
    finally:
        refresher.stop()
    warnings = [r for r in caplog.records if "refuses writes" in r.getMessage()]
    assert len(warnings) == 1


def test_a_read_only_artifact_store_without_its_table_holds_nothing(
    read_only_role: tuple[str, str, str],
) -> None:
    url, database, _ = read_only_role
    store = open_artifact_store(url, read_only=True)
    with pytest.raises(ArtifactNotFound):
        store.open_reader("weights")
    assert not any(t.endswith("tuner_artifacts") for t in tables(database))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
        (OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
        (
            sa.exc.OperationalError(
                "INSERT ...", {}, sqlite3.OperationalError("attempt to write a readonly database")
            ),
            "attempt to write a readonly database",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), None),
        (sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O")), None),
    ],
)
def test_a_refused_write_is_told_from_other_errors(error: Exception, reason: str | None) -> None:
    """Files and SQLite refuse writes too (the database roles are covered above); a full
    disk or an outage is not a refusal: the refresher keeps trying then."""
    try:
        raise RuntimeError("could not publish") from error
    except RuntimeError as wrapped:
        found = write_refusal(wrapped)
    assert (found is None) if reason is None else (found is not None and reason in found)
