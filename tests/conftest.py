"""Shared fixtures: a real PostgreSQL database per test session, storages, study files.

Every test that stores studies runs against a database this session creates on the machine's
PostgreSQL server (127.0.0.1:5432, trust auth) and drops at the end; nothing is mocked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.study import REPO, pg_url, scratch_database


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group tests for ``pytest -n`` (tests/run.sh runs two processes): a module's tests run
    in one process, so its module fixtures (a served dashboard, the benchmark runs) start
    once, and the reliability suite runs in one process, so its figures land in one file."""
    reliability = Path(__file__).with_name("reliability")
    for item in items:
        path = Path(item.path)
        group = "reliability" if reliability in path.parents else str(path)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; dropped afterwards."""
    with scratch_database() as name:
        yield name


@pytest.fixture
def pg_storage(pg_database: str) -> str:
    return pg_url(pg_database)


@pytest.fixture(params=["embedded", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same behaviour suite runs on the embedded default and on PostgreSQL."""
    if request.param == "embedded":
        return f"journal://{tmp_path / 'storage' / 'journal.log'}"
    return pg_url(request.getfixturevalue("pg_database"))


@pytest.fixture
def study_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the embedded default and worker logs of each test inside its tmp_path."""
    monkeypatch.setenv("TUNER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TUNER_STORAGE", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "tests"), str(REPO)]))
