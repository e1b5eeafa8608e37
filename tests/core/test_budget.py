"""The budget is exact across a fleet, on the embedded default and on PostgreSQL."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers.study import helper_objective, load_trials, run_tuner, write_study
from optuna.trial import TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _env(step_seconds: str = "0.01") -> dict[str, str]:
    return {**os.environ, "TUNER_TEST_STEP_SECONDS": step_seconds}


def test_four_workers_on_postgresql_finish_exactly_n_trials(
    tmp_path: Path, pg_storage: str, study_name: str
) -> None:
    study_file = write_study(
        tmp_path,
        study_name,
        budget={"n_trials": 20},
        objective=helper_objective("slow"),
    )
    result = run_tuner(
        "launch",
        str(study_file),
        "--storage",
        pg_storage,
        "--workers",
        "4",
        env=_env(step_seconds="0.05"),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    trials = load_trials(study_name, pg_storage)
    assert len(trials) == 20
    assert all(t.state in FINISHED for t in trials)
    assert len({t.user_attrs["tuner:worker"] for t in trials}) == 4, "all 4 workers took trials"


def test_embedded_default_runs_two_workers_without_lock_errors(
    tmp_path: Path, study_name: str
) -> None:
    # Trials that take a moment each, so one worker cannot finish the study before the
    # other has started (then the assertion on two workers below would say nothing).
    study_file = write_study(
        tmp_path,
        study_name,
        budget={"n_trials": 12},
        workers={"cpu": 2},
        objective=helper_objective("slow"),
    )
    result = run_tuner("launch", str(study_file), cwd=tmp_path, env=_env(step_seconds="0.05"))
    assert result.returncode == 0, result.stderr + result.stdout
    journal = tmp_path / "home" / "journal.log"
    assert journal.exists(), "the embedded default lives under TUNER_HOME (./storage/data)"
    trials = load_trials(study_name, f"journal://{journal}")
    assert len(trials) == 12 and all(t.state in FINISHED for t in trials)
    assert len({t.user_attrs["tuner:worker"] for t in trials}) == 2
    logs = "".join(p.read_text() for p in (tmp_path / "home" / "logs" / study_name).iterdir())
    assert "locked" not in logs.lower() and "Traceback" not in logs


def test_second_launch_of_a_finished_study_runs_nothing(
    tmp_path: Path, storage_url: str, study_name: str
) -> None:
    study_file = write_study(tmp_path, study_name, budget={"n_trials": 5})
    first = run_tuner("launch", str(study_file), "--storage", storage_url, env=_env())
    assert first.returncode == 0, first.stderr
    second = run_tuner("launch", str(study_file), "--storage", storage_url, env=_env())
    assert second.returncode == 0, second.stderr
    assert "nothing left to run" in second.stdout
    assert "budget of 5 trials spent" in second.stdout
    assert len(load_trials(study_name, storage_url)) == 5


def test_raising_n_trials_resumes_with_the_difference(
    tmp_path: Path, storage_url: str, study_name: str
) -> None:
    study_file = write_study(tmp_path, study_name, budget={"n_trials": 4})
    assert (
        run_tuner("launch", str(study_file), "--storage", storage_url, env=_env()).returncode == 0
    )
    study_file = write_study(tmp_path, study_name, budget={"n_trials": 7})
    assert (
        run_tuner("launch", str(study_file), "--storage", storage_url, env=_env()).returncode == 0
    )
    status = run_tuner("status", str(study_file), "--storage", storage_url, "--format", "json")
    data = json.loads(status.stdout)
    assert sum(data["states"][s] for s in ("COMPLETE", "PRUNED", "FAIL")) == 7
    assert data["states"]["RUNNING"] == 0 and data["states"]["WAITING"] == 0


def test_timeout_stops_the_fleet(tmp_path: Path, storage_url: str, study_name: str) -> None:
    study_file = write_study(
        tmp_path,
        study_name,
        budget={"timeout": 2},
        objective=helper_objective("slow"),
    )
    result = run_tuner("launch", str(study_file), "--storage", storage_url, env=_env("0.1"))
    assert result.returncode == 0, result.stderr
    trials = load_trials(study_name, storage_url)
    assert 1 <= len(trials) <= 8
    assert all(t.state in FINISHED for t in trials)
    again = run_tuner("launch", str(study_file), "--storage", storage_url, env=_env())
    assert "timeout of 2s reached" in again.stdout
