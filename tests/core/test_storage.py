"""PostgreSQL as the core storage: connections are checked before use."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import optuna
import pytest
from helpers.study import admin_sql, pg_url, scratch_database

from tuner.storage import open_storage


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of this test's own, so cutting its connections disturbs no other test."""
    with scratch_database("tuner_core") as name:
        yield name


def test_pooled_connections_cut_by_the_server_are_replaced_unnoticed(own_database: str) -> None:
    # A PostgreSQL restart, a failover or an idle timeout closes the connections a launcher
    # or dashboard keeps in its pool; the next command must not fail on one of them.
    storage = open_storage(pg_url(own_database))  # no reconnecting wrapper: one try per call
    optuna.create_study(study_name="kept", storage=storage)
    admin_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{own_database}' AND pid <> pg_backend_pid()"
    )
    assert [s.study_name for s in storage.get_all_studies()] == ["kept"]


def test_processes_opening_a_fresh_database_at_once_all_succeed() -> None:
    """A fleet started together on an empty database: each worker creates Optuna's tables,
    and losing that race must not stop it ("relation already exists")."""
    script = "import sys; from tuner.storage import open_storage; open_storage(sys.argv[1])"
    for _ in range(3):  # a race: give it several chances to show
        with scratch_database("tuner_race") as name:
            starts = [
                subprocess.Popen(
                    [sys.executable, "-c", script, pg_url(name)],
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(6)
            ]
            for process in starts:
                _, err = process.communicate(timeout=120)
                assert process.returncode == 0, err
