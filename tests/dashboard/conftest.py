"""Fixtures for the dashboard and report tests: a PostgreSQL study, a served dashboard, Chromium.

One database per session (created here, dropped WITH (FORCE) at the end) holds the study
``dashboard_demo`` builds; one dashboard serves it on a free localhost port; one headless
Chromium from Debian's packages drives it. Screenshots go to a ``screenshots`` folder under
pytest's temporary directory (its path is printed in the test log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from dashboard_chromium import start_chromium, stop_chromium
from dashboard_demo import DEMO_STUDY, populate
from helpers.study import pg_url
from optuna.artifacts import FileSystemArtifactStore
from selenium import webdriver

from tuner.dashboard import DashboardServer

optuna.logging.set_verbosity(optuna.logging.WARNING)
logger = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def pg_storage(pg_database: str) -> Iterator[optuna.storages.RDBStorage]:
    """An Optuna RDBStorage on the session's test database."""
    storage = optuna.storages.RDBStorage(pg_url(pg_database))
    try:
        yield storage
    finally:
        storage.engine.dispose()


@pytest.fixture(scope="session")
def artifact_store(tmp_path_factory: pytest.TempPathFactory) -> FileSystemArtifactStore:
    return FileSystemArtifactStore(str(tmp_path_factory.mktemp("artifacts")))


@pytest.fixture(scope="session")
def demo_study(pg_storage: optuna.storages.RDBStorage) -> optuna.Study:
    """The demo study (see ``dashboard_demo``) in PostgreSQL."""
    study = optuna.create_study(storage=pg_storage, study_name=DEMO_STUDY, direction="maximize")
    populate(study)
    return study


@pytest.fixture(scope="session")
def server(
    pg_storage: optuna.storages.RDBStorage,
    artifact_store: FileSystemArtifactStore,
    demo_study: optuna.Study,
) -> Iterator[DashboardServer]:
    """The read-only dashboard on a free localhost port, figures refreshed every second."""
    with DashboardServer(pg_storage, artifact_store, port=0, refresh_seconds=1.0) as dashboard:
        dashboard.start()
        assert dashboard.refresher is not None
        assert dashboard.refresher.wait_for_first_pass(timeout=30)
        yield dashboard


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    logger.info("screenshots in %s", folder)
    return folder


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    driver = start_chromium()
    try:
        yield driver
    finally:
        stop_chromium(driver)


@pytest.fixture(scope="session")
def shoot(screenshots: Path) -> Callable[[webdriver.Chrome, str], Path]:
    """Save a screenshot named after the check it documents."""

    def save(driver: webdriver.Chrome, name: str) -> Path:
        path = screenshots / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"could not save {path}"
        return path

    return save
