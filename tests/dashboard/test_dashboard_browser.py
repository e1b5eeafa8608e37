"""The dashboard as a user sees it: headless Chromium against a served PostgreSQL study.

Selectors are optuna-dashboard 0.21's own element ids (``#graph-intermediate-values``,
``#graph-hyperparameter-importances``) and the ids it gives figures registered on a study
(``user-defined-plot:<figure id>``). A plot counts as shown once plotly drew its SVG, and as
showing the study once the curves, bars or table rows it drew are counted. Each check keeps a
screenshot of what it looked at (the plot's card, or the window).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from dashboard_chromium import start_chromium, stop_chromium
from dashboard_demo import DEMO_STUDY, populate, weights_bytes
from optuna.trial import TrialState
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tuner.dashboard import (
    FLEET_STATUS_FIGURE_ID,
    FLEET_TIMELINE_FIGURE_ID,
    PRUNING_FIGURE_ID,
    DashboardServer,
)
from tuner.report import LEARNING_CURVE_ARTIFACT, WEIGHTS_ARTIFACT

pytestmark = pytest.mark.browser
WAIT_S = 30
Shoot = Callable[[webdriver.Chrome | WebElement, str], Path]
# What plotly drew inside a plot: curves, scatter markers, bars, tables.
_MARKS_JS = """
const plot = document.getElementById(arguments[0]);
const count = selector => plot.querySelectorAll(selector).length;
return {
    lines: count('g.trace.scatter path.js-line'),
    markers: count('g.trace.scatter .points path.point'),
    bars: count('g.trace.bars .point path'),
    tables: count('g.table'),
};
"""
# Resolves to "reached" or "blocked": whether this page can fetch the URL at all.
_FETCH_JS = """
const done = arguments[arguments.length - 1];
fetch(arguments[0], {mode: 'no-cors', cache: 'no-store'})
    .then(() => done('reached'), () => done('blocked'));
"""


def _plot_text(driver: webdriver.Chrome, element_id: str) -> str:
    """The text plotly drew in the SVG of the plot with this id, once it has drawn it."""

    def drawn(d: webdriver.Chrome) -> str | bool:
        found = d.find_elements(By.CSS_SELECTOR, f'[id="{element_id}"] svg.main-svg')
        text = " ".join(e.get_attribute("textContent") or "" for e in found)
        return text if found and text.strip() else False

    return WebDriverWait(driver, WAIT_S).until(drawn, f"plot {element_id} was not drawn")


def _marks(driver: webdriver.Chrome, element_id: str) -> dict[str, int]:
    """How many curves, markers, bars and tables plotly drew in the plot (once drawn)."""
    _plot_text(driver, element_id)
    return driver.execute_script(_MARKS_JS, element_id)


def _card(driver: webdriver.Chrome, element_id: str) -> WebElement:
    """The dashboard card that holds the plot with this id (what a screenshot should show)."""
    plot = driver.find_element(By.ID, element_id)
    return plot.find_element(By.XPATH, "./ancestor::div[contains(@class, 'MuiCard-root')][1]")


def _http(url: str, method: str = "GET", headers: dict[str, str] | None = None):
    """(status, body bytes) of one HTTP request; never raises on 4xx."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None):
    """(status, JSON body or None) of one HTTP request; never raises on 4xx."""
    status, body = _http(url, method, headers)
    return status, json.loads(body) if body.strip() else None


def _study_page(server: DashboardServer, study: optuna.Study) -> str:
    return f"{server.url}/studies/{study._study_id}"


def _count(study: optuna.Study, *states: TrialState) -> int:
    return sum(1 for t in study.trials if t.state in states)


def test_study_list_shows_the_study(
    server: DashboardServer, demo_study: optuna.Study, browser: webdriver.Chrome, shoot: Shoot
) -> None:
    browser.get(server.url)
    WebDriverWait(browser, WAIT_S).until(
        lambda d: DEMO_STUDY in d.find_element(By.TAG_NAME, "body").text,
        "the study list does not show the demo study",
    )
    link = browser.find_element(
        By.CSS_SELECTOR, f'a[href="/dashboard/studies/{demo_study._study_id}"]'
    )
    assert DEMO_STUDY in link.text
    shoot(browser, "01-study-list")


def test_study_page_shows_history_intermediate_values_and_importance(
    server: DashboardServer, demo_study: optuna.Study, browser: webdriver.Chrome, shoot: Shoot
) -> None:
    browser.get(_study_page(server, demo_study))
    complete = _count(demo_study, TrialState.COMPLETE)
    # One marker per complete trial.
    assert _marks(browser, "plot-history")["markers"] == complete
    shoot(_card(browser, "plot-history"), "02-optimization-history")
    # A learning curve per trial (optuna-dashboard leaves pruned ones out unless asked),
    # the best trial's among them.
    assert _marks(browser, "graph-intermediate-values")["lines"] >= complete
    best = demo_study.best_trial.number
    assert f"trial #{best}" in _plot_text(browser, "graph-intermediate-values")
    shoot(_card(browser, "graph-intermediate-values"), "03-intermediate-values")
    # Every searched parameter is ranked, one bar each.
    importance = _plot_text(browser, "graph-hyperparameter-importances")
    assert all(name in importance for name in ("lr", "hidden", "dropout"))
    assert _marks(browser, "graph-hyperparameter-importances")["bars"] == 3
    shoot(_card(browser, "graph-hyperparameter-importances"), "04-hyperparameter-importance")


def test_pruning_and_fleet_views_appear_on_the_study_page(
    server: DashboardServer, demo_study: optuna.Study, browser: webdriver.Chrome, shoot: Shoot
) -> None:
    browser.get(_study_page(server, demo_study))
    pruning_id = f"user-defined-plot:{PRUNING_FIGURE_ID}"
    pruning = _plot_text(browser, pruning_id)
    # 7 pruned trials stopped after 2, 4 or 8 of 12 epochs: 54 of 21 * 12 = 252 epochs saved.
    assert "compute saved: 54 of 252 epochs (21%)" in pruning
    marks = _marks(browser, pruning_id)
    assert marks["lines"] == len(demo_study.trials)  # every trial's learning curve
    assert marks["markers"] == _count(demo_study, TrialState.PRUNED)  # an X where each stopped
    assert marks["bars"] == 3  # the steps trials were stopped at: 1, 3 and 7
    shoot(_card(browser, pruning_id), "05-pruning-view")

    timeline_id = f"user-defined-plot:{FLEET_TIMELINE_FIGURE_ID}"
    timeline = _plot_text(browser, timeline_id)
    assert "gpu-node-1:4101" in timeline and "gpu-node-1 GPU 0" in timeline
    # Each trial is a bar in its worker's row and in its GPU's row.
    assert _marks(browser, timeline_id)["bars"] == 2 * len(demo_study.trials)
    shoot(_card(browser, timeline_id), "06-fleet-timeline")

    status_id = f"user-defined-plot:{FLEET_STATUS_FIGURE_ID}"
    status = _plot_text(browser, status_id)
    assert _marks(browser, status_id)["tables"] == 2  # workers, failed trials
    assert all(state in status for state in ("running", "idle", "lost"))  # each worker's
    assert "< 1 min" in status  # the live workers' last heartbeat ...
    assert re.search(r"(?<!\d)(1[4-9]|2\d) min", status)  # ... and the lost one's, 15 min ago
    assert "CUDA out of memory" in status and "worker lost" in status
    shoot(_card(browser, status_id), "07-fleet-status")


def test_trial_artifacts_are_listed_and_downloadable(
    server: DashboardServer, artifact_study: optuna.Study, browser: webdriver.Chrome, shoot: Shoot
) -> None:
    browser.get(f"{_study_page(server, artifact_study)}/trials")

    def artifacts_of(number: int) -> dict[str, str]:
        """Open the trial in the Trials tab; its artifacts' names and download links."""
        entry = WebDriverWait(browser, WAIT_S).until(
            lambda d: d.find_elements(By.XPATH, f"//*[normalize-space(text())='Trial {number}']")
        )
        entry[0].click()
        WebDriverWait(browser, WAIT_S).until(
            lambda d: f"Trial {number} (trial_id=" in d.find_element(By.TAG_NAME, "body").text
        )
        links = WebDriverWait(browser, WAIT_S).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, 'a[aria-label="download artifact"]')
        )
        return {a.get_attribute("download"): a.get_attribute("href") for a in links}

    # A trial that finished after the best, and worse, keeps only its learning curve ...
    best = artifact_study.best_trial
    later = next(t for t in artifact_study.trials if t.number > best.number)
    assert set(artifacts_of(later.number)) == {LEARNING_CURVE_ARTIFACT}
    # ... the best one also its weights, which download in read-only mode.
    links = artifacts_of(best.number)
    assert set(links) == {LEARNING_CURVE_ARTIFACT, WEIGHTS_ARTIFACT}
    assert _http(links[WEIGHTS_ARTIFACT]) == (200, weights_bytes(best.number))
    curve = json.loads(_http(links[LEARNING_CURVE_ARTIFACT])[1])
    assert curve["value"][-1] == best.value
    heading = browser.find_element(By.XPATH, "//*[normalize-space(text())='Artifacts']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", heading)
    shoot(browser, "08-trial-artifacts")

    # Deleting an artifact is a write: refused, and the weights stay.
    artifact_id = links[WEIGHTS_ARTIFACT].rsplit("/", 1)[1]
    api = server.url.replace(
        "/dashboard", f"/api/artifacts/{artifact_study._study_id}/{best._trial_id}/{artifact_id}"
    )
    status, body = _request(api, "DELETE")
    assert status == 403 and "read-only" in body["reason"]
    assert _http(links[WEIGHTS_ARTIFACT]) == (200, weights_bytes(best.number))


def test_delete_is_refused_in_read_only_mode(
    server: DashboardServer,
    demo_study: optuna.Study,
    pg_storage: optuna.storages.RDBStorage,
    browser: webdriver.Chrome,
    shoot: Shoot,
) -> None:
    api = server.url.replace("/dashboard", f"/api/studies/{demo_study._study_id}")
    status, body = _request(api, "DELETE")
    assert status == 403
    assert "read-only" in body["reason"] and "--allow-writes" in body["reason"]
    # The same through the dashboard's own delete button.
    browser.get(server.url)
    card = (
        f"//a[@href='/dashboard/studies/{demo_study._study_id}']"
        "/ancestor::div[contains(@class, 'MuiCard-root')][1]"
    )
    delete = WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_elements(By.XPATH, f"{card}//*[@data-testid='DeleteIcon']")
    )
    delete[0].click()
    confirm = WebDriverWait(browser, WAIT_S).until(
        lambda d: [
            b
            for b in d.find_elements(By.CSS_SELECTOR, '[role="dialog"] button')
            if b.text.strip().lower() == "yes"
        ]
    )
    confirm[0].click()
    WebDriverWait(browser, WAIT_S).until(
        lambda d: "Failed to delete study" in d.find_element(By.TAG_NAME, "body").text,
        "the dashboard did not report the refused delete",
    )
    shoot(browser, "09-delete-refused-read-only")
    assert pg_storage.get_study_id_from_name(DEMO_STUDY) == demo_study._study_id
    assert len(pg_storage.get_all_trials(demo_study._study_id)) == len(demo_study.trials)


def test_delete_works_when_writes_are_allowed(pg_storage: optuna.storages.RDBStorage) -> None:
    throwaway = optuna.create_study(storage=pg_storage, study_name="throwaway-delete-me")
    with DashboardServer(pg_storage, port=0, allow_writes=True, refresh_seconds=None) as dash:
        dash.start()
        api = dash.url.replace("/dashboard", f"/api/studies/{throwaway._study_id}")
        status, _ = _request(api, "DELETE")
    assert status == 204
    names = [s.study_name for s in pg_storage.get_all_studies()]
    assert "throwaway-delete-me" not in names and DEMO_STUDY in names


def test_token_is_required_when_set(
    pg_storage: optuna.storages.RDBStorage,
    demo_study: optuna.Study,
    browser: webdriver.Chrome,
    shoot: Shoot,
) -> None:
    token = "s3cret-token-for-tests"
    with DashboardServer(pg_storage, port=0, token=token, refresh_seconds=None) as dash:
        dash.start()
        api = dash.url.replace("/dashboard", "/api/studies")
        status, body = _request(api)
        assert status == 401 and "token" in body["reason"]
        assert _request(api, headers={"Authorization": "Bearer wrong-token-xxxx"})[0] == 401
        status, body = _request(api, headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and DEMO_STUDY in json.dumps(body)
        # A browser opens the link with ?token= once; the cookie carries it afterwards.
        browser.get(f"{dash.url}?token={token}")
        WebDriverWait(browser, WAIT_S).until(
            lambda d: DEMO_STUDY in d.find_element(By.TAG_NAME, "body").text
        )
        assert "token=" not in browser.current_url
        shoot(browser, "10-token-login")


def test_report_renders_its_figures_with_the_network_off(
    demo_study: optuna.Study,
    server: DashboardServer,
    browser: webdriver.Chrome,
    tmp_path: Path,
    shoot: Shoot,
) -> None:
    from tuner.report import write_report

    report = write_report(demo_study, tmp_path / "report.html")
    # A URL this machine's Chromium reaches while it has a network: the dashboard.
    browser.get(server.url)
    assert browser.execute_async_script(_FETCH_JS, server.url) == "reached"
    # The report's Chromium has none: names do not resolve, and DevTools' offline mode fails
    # every request, to an IP address too.
    driver = start_chromium("--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1200,4800")
    try:
        driver.set_network_conditions(
            offline=True, latency=0, download_throughput=0, upload_throughput=0
        )
        driver.get(report.as_uri())
        best = demo_study.best_trial.number
        # Each figure is drawn, and drawn from the study's data.
        expected: dict[str, Callable[[str, dict[str, Any]], bool]] = {
            "history": lambda text, m: m["markers"] == _count(demo_study, TrialState.COMPLETE),
            "intermediate": lambda text, m: m["lines"] >= _count(demo_study, TrialState.COMPLETE),
            "importance": lambda text, m: m["bars"] == 3 and "dropout" in text,
            "parallel": lambda text, m: all(p in text for p in ("lr", "hidden", "dropout")),
            "pruning": lambda text, m: "compute saved: 54 of 252 epochs" in text and m["bars"] == 3,
            "fleet-timeline": lambda text, m: m["bars"] == 2 * len(demo_study.trials),
            "fleet-status": lambda text, m: m["tables"] == 2 and "CUDA out of memory" in text,
        }
        for div_id, shows_the_study in expected.items():
            text = _plot_text(driver, div_id)
            assert shows_the_study(text, _marks(driver, div_id)), f"report figure {div_id}"
        assert f"best (trial {best})" in _plot_text(driver, "pruning")
        # The page asked for nothing (a request counts here even when it failed) ...
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert [u for u in loaded if u.startswith(("http:", "https:"))] == []
        # ... and could not have had it: the network really is off for it.
        assert driver.execute_async_script(_FETCH_JS, server.url) == "blocked"
        shoot(driver, "11-report-offline")
    finally:
        stop_chromium(driver)


def test_a_study_without_tuner_data_gets_no_tuner_figures(
    pg_storage: optuna.storages.RDBStorage, server: DashboardServer
) -> None:
    plain = optuna.create_study(storage=pg_storage, study_name="plain-optuna")
    plain.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    populated = optuna.create_study(storage=pg_storage, study_name="late-pruning")
    populate(populated, n_trials=6)
    assert server.refresher is not None
    passes = server.refresher.passes
    deadline = time.monotonic() + WAIT_S
    while server.refresher.passes < passes + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    api = server.url.replace("/dashboard", "/api/studies/{}")
    _, plain_detail = _request(api.format(plain._study_id))
    _, late_detail = _request(api.format(populated._study_id))
    assert plain_detail["plotly_graph_objects"] == []
    assert {g["id"] for g in late_detail["plotly_graph_objects"]} == {
        PRUNING_FIGURE_ID,
        FLEET_TIMELINE_FIGURE_ID,
        FLEET_STATUS_FIGURE_ID,
    }
