"""PostgreSQL as the core storage: connections are checked before use."""

from __future__ import annotations

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
