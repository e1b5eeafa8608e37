"""Helpers for tests that write study files and run the ``tuner`` command."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg2
import yaml

PG_HOST = os.environ.get("TUNER_TEST_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TUNER_TEST_PGPORT", "5432"))
PG_USER = os.environ.get("TUNER_TEST_PGUSER", "postgres")
REPO = Path(__file__).resolve().parents[2]


def pg_url(database: str, user: str = PG_USER, password: str | None = None) -> str:
    secret = f":{password}" if password else ""
    return f"postgresql+psycopg2://{user}{secret}@{PG_HOST}:{PG_PORT}/{database}"


def admin_sql(sql: str, dbname: str = "postgres") -> None:
    """Run one statement (CREATE/DROP DATABASE, roles) as the test server's superuser."""
    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


@contextlib.contextmanager
def scratch_database(prefix: str = "tuner_test") -> Iterator[str]:
    """A fresh database on the test server, dropped (connections and all) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def helper_objective(name: str) -> dict[str, str]:
    """The study file's ``objective`` for the function ``name`` in tests/helpers/objectives.py."""
    return {"model": f"helpers.objectives:{name}", "metric": "loss", "direction": "minimize"}


def write_study(folder: Path, name: str, **sections: object) -> Path:
    """Write a study file for the objective in tests/helpers/objectives.py; override any key."""
    document: dict[str, object] = {
        "name": name,
        "objective": helper_objective("quadratic"),
        "search_space": {"x": {"low": -5.0, "high": 5.0}, "y": {"low": -5.0, "high": 5.0}},
        "sampler": {"type": "random", "seed": 0},
        "budget": {"n_trials": 10},
        "workers": {"cpu": 1, "heartbeat_interval": 0.5, "heartbeat_grace": 3.0},
    }
    document.update(sections)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def tuner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuner", *args]


def tuner_env(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``, with the tests' helper objectives
    (``helpers.objectives``) and the repository importable in a ``tuner`` subprocess."""
    return {
        **os.environ,
        **extra,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)]),
    }


def run_tuner(
    *args: str, timeout: float = 240, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run the ``tuner`` command in a subprocess, as a user would.

    The tests' helper objectives are importable in it (``helpers.objectives``).
    """
    env = tuner_env(**(os.environ if env is None else env))
    return subprocess.run(
        tuner_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env, **kwargs
    )


def load_trials(name: str, url: str) -> list[optuna.trial.FrozenTrial]:
    """Every trial of the stored study, read the way tuner opens storages."""
    from tuner.storage import open_storage

    study = optuna.load_study(study_name=name, storage=open_storage(url))
    return study.get_trials(deepcopy=False)
