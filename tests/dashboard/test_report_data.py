"""The numbers the pruning and fleet views show, computed from a study's trials and attrs."""

from __future__ import annotations

import optuna
import pytest
from dashboard_demo import EPOCHS, populate
from optuna.trial import TrialState, create_trial

from tuner.report import pruning_summary, worker_records
from tuner.report._data import failed_trials, format_age, study_system_attrs


@pytest.fixture
def demo() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    populate(study)
    return study


def test_compute_saved_counts_epochs_of_finished_trials(demo: optuna.Study) -> None:
    summary = pruning_summary(study_system_attrs(demo), demo.trials)
    assert (summary.n_complete, summary.n_pruned, summary.epochs_planned) == (14, 7, EPOCHS)
    # Pruned after 2, 2, 2, 4, 4, 8, 8 epochs instead of 12 each.
    assert summary.epochs_trained == 14 * 12 + 30
    assert summary.epochs_saved == 7 * 12 - 30
    assert summary.stop_steps == {1: 3, 3: 2, 7: 2}
    assert summary.headline() == "compute saved: 54 of 252 epochs (21%)"


def test_planned_epochs_fall_back_to_the_furthest_complete_trial() -> None:
    study = optuna.create_study()
    study.add_trial(create_trial(value=1.0, intermediate_values={s: 1.0 for s in range(10)}))
    study.add_trial(
        create_trial(state=TrialState.PRUNED, intermediate_values={0: 2.0, 1: 2.0, 2: 2.0})
    )
    summary = pruning_summary(study_system_attrs(study), study.trials)
    assert summary.epochs_planned == 10
    assert (summary.epochs_trained, summary.epochs_saved) == (13, 7)


def test_saving_is_unknown_before_any_trial_completes() -> None:
    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={0: 1.0}))
    summary = pruning_summary(study_system_attrs(study), study.trials)
    assert summary.epochs_planned is None and summary.epochs_saved is None
    assert "unknown" in summary.headline()


def test_failed_trials_carry_reason_and_re_runs(demo: optuna.Study) -> None:
    failed = {f.number: f for f in failed_trials(demo.trials)}
    assert set(failed) == {4, 9}
    assert failed[9].retried_by == (10,) and failed[4].retried_by == ()
    assert failed[4].reason.startswith("CUDA out of memory")


def test_worker_records_skip_malformed_entries(demo: optuna.Study) -> None:
    demo._storage.set_study_system_attr(demo._study_id, "tuner:worker:bad", "not a dict")
    records = worker_records(study_system_attrs(demo))
    assert [r.state for r in records] == ["running", "idle", "lost"]
    assert records[0].host == "gpu-node-1" and records[0].gpu == "0" and records[0].pid == 4101


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "never"),
        (5, "< 1 min"),
        (61, "1 min"),
        (3599, "59 min"),
        (7200, "2 h"),
        (3 * 86400, "3 d"),
    ],
)
def test_heartbeat_age_is_coarse(seconds: float | None, text: str) -> None:
    assert format_age(seconds) == text
