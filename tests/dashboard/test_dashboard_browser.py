"""The dashboard as a user sees it: headless Chromium against a served PostgreSQL study.

Selectors are optuna-dashboard 0.21's own element ids (``#graph-intermediate-values``,
``#graph-hyperparameter-importances``) and the ids it gives figures registered on a study
(``user-defined-plot:<figure id>``); a plot counts as shown once plotly drew its SVG.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from dashboard_chromium import start_chromium, stop_chromium
from dashboard_demo import DEMO_STUDY, populate
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tuner.dashboard import (
    FLEET_STATUS_FIGURE_ID,
    FLEET_TIMELINE_FIGURE_ID,
    PRUNING_FIGURE_ID,
    DashboardServer,
)

pytestmark = pytest.mark.browser
WAIT_S = 30
Shoot = Callable[[webdriver.Chrome, str], Path]


def _plot_text(driver: webdriver.Chrome, element_id: str) -> str:
    """The text plotly drew in the SVG of the plot with this id, once it has drawn it."""

    def drawn(d: webdriver.Chrome) -> str | bool:
        found = d.find_elements(By.CSS_SELECTOR, f'[id="{element_id}"] svg.main-svg')
        text = " ".join(e.get_attribute("textContent") or "" for e in found)
        return text if found and text.strip() else False

    return WebDriverWait(driver, WAIT_S).until(drawn, f"plot {element_id} was not drawn")


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None):
    """(status, JSON body or None) of one HTTP request; never raises on 4xx."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    return status, json.loads(body) if body.strip() else None


def _study_page(server: DashboardServer, study: optuna.Study) -> str:
    return f"{server.url}/studies/{study._study_id}"


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
    assert _plot_text(browser, "plot-history")
    intermediate = _plot_text(browser, "graph-intermediate-values")
    importance = _plot_text(browser, "graph-hyperparameter-importances")
    assert "Step" in intermediate or "step" in intermediate
    # Every searched parameter is ranked.
    assert all(name in importance for name in ("lr", "hidden", "dropout"))
    element = browser.find_element(By.ID, "graph-hyperparameter-importances")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    shoot(browser, "02-study-page-intermediate-values-importance")


def test_pruning_and_fleet_views_appear_on_the_study_page(
    server: DashboardServer, demo_study: optuna.Study, browser: webdriver.Chrome, shoot: Shoot
) -> None:
    browser.get(_study_page(server, demo_study))
    pruning = _plot_text(browser, f"user-defined-plot:{PRUNING_FIGURE_ID}")
    timeline = _plot_text(browser, f"user-defined-plot:{FLEET_TIMELINE_FIGURE_ID}")
    status = _plot_text(browser, f"user-defined-plot:{FLEET_STATUS_FIGURE_ID}")
    # 7 pruned trials stopped after 2, 4 or 8 of 12 epochs: 54 of 21 * 12 = 252 epochs saved.
    assert "compute saved: 54 of 252 epochs (21%)" in pruning
    assert "stopped here" in pruning
    assert "gpu-node-1:4101" in timeline and "gpu-node-1 GPU 0" in timeline
    assert "CUDA out of memory" in status and "worker lost" in status and " min" in status
    element = browser.find_element(By.ID, f"user-defined-plot:{PRUNING_FIGURE_ID}")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
    browser.execute_script("window.scrollBy(0, -120)")
    shoot(browser, "03-pruning-and-fleet-views")


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
    shoot(browser, "04-delete-refused-read-only")
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
        shoot(browser, "05-token-login")


def test_report_renders_its_figures_with_the_network_off(
    demo_study: optuna.Study, tmp_path: Path, shoot: Shoot
) -> None:
    from tuner.report import write_report

    report = write_report(demo_study, tmp_path / "report.html")
    driver = start_chromium("--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1200,4800")
    try:
        driver.set_network_conditions(
            offline=True, latency=0, download_throughput=0, upload_throughput=0
        )
        driver.get(report.as_uri())
        expected = [
            "history",
            "intermediate",
            "importance",
            "parallel",
            "pruning",
            "fleet-timeline",
            "fleet-status",
        ]
        for div_id in expected:
            assert _plot_text(driver, div_id)
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert [u for u in loaded if u.startswith(("http:", "https:"))] == []
        assert "compute saved: 54 of 252 epochs" in _plot_text(driver, "pruning")
        shoot(driver, "06-report-offline")
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
