"""Fixtures for the dashboard and report tests: PostgreSQL studies, a served dashboard, Chromium.

One database per session (created here, dropped WITH (FORCE) at the end) holds the studies
``dashboard_demo`` builds, and tuner's artifact store for PostgreSQL (the one ``tuner
dashboard`` serves) holds their artifacts; one dashboard serves them on a free localhost port;
one headless Chromium from Debian's packages drives it. Screenshots go to a ``screenshots``
folder under pytest's temporary directory (its path is printed in the test log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from dashboard_chromium import start_chromium, stop_chromium
from dashboard_demo import ARTIFACT_STUDY, DEMO_STUDY, populate, run_with_artifacts
from helpers.study import pg_url
from optuna.artifacts._protocol import ArtifactStore
from selenium import webdriver
from selenium.webdriver.remote.webelement import WebElement

from tuner.dashboard import DashboardServer
from tuner.storage import open_artifact_store

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
def artifact_store(pg_database: str) -> ArtifactStore:
    """tuner's artifact store beside the session's database, as workers and the CLI open it."""
    return open_artifact_store(pg_url(pg_database))


@pytest.fixture(scope="session")
def demo_study(pg_storage: optuna.storages.RDBStorage) -> optuna.Study:
    """The demo study (see ``dashboard_demo``) in PostgreSQL."""
    study = optuna.create_study(storage=pg_storage, study_name=DEMO_STUDY, direction="maximize")
    populate(study)
    return study


@pytest.fixture(scope="session")
def artifact_study(
    pg_storage: optuna.storages.RDBStorage,
    artifact_store: ArtifactStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> optuna.Study:
    """A study whose trials uploaded artifacts as the built-in objectives do (minimize)."""
    study = optuna.create_study(storage=pg_storage, study_name=ARTIFACT_STUDY)
    run_with_artifacts(study, artifact_store, tmp_path_factory.mktemp("uploads"))
    return study


@pytest.fixture(scope="session")
def server(
    pg_storage: optuna.storages.RDBStorage,
    artifact_store: ArtifactStore,
    demo_study: optuna.Study,
    artifact_study: optuna.Study,
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
def shoot(screenshots: Path) -> Callable[[webdriver.Chrome | WebElement, str], Path]:
    """Save a screenshot named after the check it documents: of the browser window, or of
    one element (a plot's card), so the picture shows exactly what the check looked at."""

    def save(target: webdriver.Chrome | WebElement, name: str) -> Path:
        path = screenshots / f"{name}.png"
        if isinstance(target, WebElement):
            # Centred, so the dashboard's fixed top bar does not cover the element's top.
            target.parent.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
            saved = target.screenshot(str(path))
        else:
            saved = target.save_screenshot(str(path))
        assert saved, f"could not save {path}"
        return path

    return save
