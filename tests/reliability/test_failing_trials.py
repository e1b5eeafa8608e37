"""Issue 6, point 5: a trial that raises, returns NaN or runs out of memory fails alone; a study
whose first trials mostly fail stops early instead of burning its budget."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from helpers import objectives
from helpers.study import run_tuner, write_study
from optuna.trial import TrialState

from tuner.fleet import run_worker
from tuner.spec import load_spec

from ._fleet import FAIL_REASON, assert_exact_budget, describe, trials


def test_bad_trials_fail_alone_with_their_reason(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any
) -> None:
    url = own_pg.url()
    spec = load_spec(write_study(tmp_path, study_name, budget={"n_trials": 6}))
    report = run_worker(spec, url, objectives.faulty, handle_signals=False)

    final = trials(study_name, url)
    assert report.trials_run == 6 and report.outcomes == {"COMPLETE": 3, "FAIL": 3}
    reasons = {t.number: t.user_attrs.get(FAIL_REASON) for t in final}
    assert reasons[1] == "ValueError: bad batch"
    assert reasons[2] == "ValueError: objective returned nan"
    assert reasons[3].startswith("OutOfMemoryError: CUDA out of memory")
    assert [t.state for t in final] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ], describe(final)
    assert_exact_budget(final, 6)
    record(
        fault="trial raises / returns NaN / CUDA OOM",
        trials_lost=0,
        failed_alone=3,
        completed_after=2,
        seconds_to_recover=0,
    )


def test_misconfigured_study_halts_early_with_a_clear_message(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any
) -> None:
    url = own_pg.url()
    study_file = write_study(
        tmp_path,
        study_name,
        objective={
            "model": "helpers.objectives:failing",
            "metric": "loss",
            "direction": "minimize",
        },
        budget={"n_trials": 50, "failure_window": 5, "max_failed_share": 0.5},
    )
    started = time.monotonic()
    result = run_tuner("launch", str(study_file), "--storage", url, "--workers", "2")
    elapsed = time.monotonic() - started

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: study {study_name} halted: ")
    assert "budget.max_failed_share=0.5 of budget.failure_window=5" in lines[0]
    assert "last reason: RuntimeError: data file missing" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    final = trials(study_name, url)
    assert 3 <= len(final) <= 5, describe(final)  # not 50
    assert all(t.state is TrialState.FAIL for t in final), describe(final)
    record(
        fault="misconfigured study (every trial raises)",
        trials_lost=0,
        trials_spent=len(final),
        budget=50,
        seconds_to_halt=round(elapsed, 1),
        message=lines[0],
    )
