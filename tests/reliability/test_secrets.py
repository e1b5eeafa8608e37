"""Issue 6, point 7: a password in the storage URL never shows.

Checked where a user or an onlooker would see it: launch progress and summary, worker logs,
error messages (unreachable or unknown database, unsupported URL), ``tuner status``, ``best``,
``trials`` and ``studies`` output, everything stored in the database, and the dashboard's API.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.study import run_tuner, tuner_cmd, write_study
from typer.testing import CliRunner

from tuner.cli import app

from ._fleet import env_for, wait_for
from .conftest import PG_BIN

USER = "tuner_secret_user"
PASSWORD = "S3cretPw"


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

    launched = run_tuner("launch", str(study_file), "--storage", secret_url, "--workers", "1")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert f"{USER}:***@" in launched.stdout  # the URL is shown, redacted
    seen["launch output"] = launched.stdout + launched.stderr
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

    # Errors: nothing listening, a database that does not exist, a scheme tuner does not take.
    unreachable = secret_url.replace(f":{own_pg.port}/", f":{_free_port()}/")
    missing_db = secret_url.rsplit("/", 1)[0] + "/no_such_database"
    for label, url in (("unreachable", unreachable), ("missing database", missing_db)):
        result = runner.invoke(app, ["launch", str(study_file), "--storage", url])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("Error: storage ") and "***" in result.stderr
        seen[f"error {label}"] = result.stdout + result.stderr
    result = runner.invoke(
        app, ["launch", str(study_file), "--storage", f"mysql://{USER}:{PASSWORD}@db/x"]
    )
    assert result.exit_code == 2 and "unsupported URL" in result.stderr
    seen["error unsupported"] = result.stderr

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
