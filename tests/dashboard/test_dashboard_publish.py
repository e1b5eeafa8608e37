"""The pruning and fleet figures registered on studies, on both storage backends."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from dashboard_demo import populate
from optuna.trial import TrialState, create_trial

from tuner.dashboard import (
    FLEET_STATUS_FIGURE_ID,
    FLEET_TIMELINE_FIGURE_ID,
    PRUNING_FIGURE_ID,
    FigurePublisher,
    make_app,
    publish_all,
)

ALL_FIGURES = {PRUNING_FIGURE_ID, FLEET_TIMELINE_FIGURE_ID, FLEET_STATUS_FIGURE_ID}


@pytest.fixture(params=["journal", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> optuna.storages.BaseStorage:
    if request.param == "journal":
        backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log"))
        return optuna.storages.JournalStorage(backend)
    return request.getfixturevalue("pg_storage")


def _new_study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    return optuna.create_study(
        storage=storage, study_name=f"pub-{uuid.uuid4().hex[:8]}", direction="maximize"
    )


def _served_figures(storage: optuna.storages.BaseStorage, study: optuna.Study) -> dict:
    """The figures optuna-dashboard's API serves for the study, by id."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/api/studies/{study._study_id}"}
    environ["HTTP_HOST"], environ["wsgi.input"] = "localhost", io.BytesIO()
    setup_testing_defaults(environ)
    body = b"".join(make_app(storage)(environ, lambda *_: None))
    return {
        g["id"]: json.loads(g["graph_object"]) for g in json.loads(body)["plotly_graph_objects"]
    }


def test_figures_are_registered_once_and_served(storage: optuna.storages.BaseStorage) -> None:
    study = _new_study(storage)
    populate(study)
    publisher = FigurePublisher(storage)
    assert set(publisher.publish_study(study)) == ALL_FIGURES
    assert publisher.publish_study(study) == []  # unchanged: nothing rewritten
    assert FigurePublisher(storage).publish_study(study) == []  # nor after a restart
    figures = _served_figures(storage, study)
    assert set(figures) == ALL_FIGURES
    assert (
        "compute saved: 54 of 252 epochs" in figures[PRUNING_FIGURE_ID]["layout"]["title"]["text"]
    )


def test_a_changed_figure_is_saved_again(storage: optuna.storages.BaseStorage) -> None:
    study = _new_study(storage)
    populate(study, n_trials=6)
    publisher = FigurePublisher(storage, min_resave_s=0)
    publisher.publish_study(study)
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={0: 0.1, 1: 0.2}))
    assert PRUNING_FIGURE_ID in publisher.publish_study(study)
    title = _served_figures(storage, study)[PRUNING_FIGURE_ID]["layout"]["title"]["text"]
    assert "2 of 5 finished trials pruned" in title  # was 1 of 4


def test_journal_storage_resaves_a_changed_figure_at_most_once_a_minute(tmp_path: Path) -> None:
    backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log"))
    storage = optuna.storages.JournalStorage(backend)
    study = _new_study(storage)
    populate(study, n_trials=6)
    publisher = FigurePublisher(storage)
    assert set(publisher.publish_study(study)) == ALL_FIGURES
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={0: 0.1}))
    assert publisher.publish_study(study) == []


def test_plain_optuna_studies_get_no_figures(storage: optuna.storages.BaseStorage) -> None:
    study = _new_study(storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    publish_all(storage)
    assert _served_figures(storage, study) == {}


def test_a_plain_study_that_reports_gets_the_pruning_view_only(
    storage: optuna.storages.BaseStorage,
) -> None:
    study = _new_study(storage)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.report(x, 0)
        return x

    study.optimize(objective, n_trials=2)
    publish_all(storage)
    assert set(_served_figures(storage, study)) == {PRUNING_FIGURE_ID}
