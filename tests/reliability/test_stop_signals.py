"""Issue 6, point 2: SIGTERM or Ctrl-C (SIGINT) to ``tuner launch`` or to one worker."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.study import helper_objective, run_tuner, write_study
from optuna.trial import TrialState

from ._fleet import (
    FAIL_REASON,
    RETRY_OF,
    alive,
    assert_exact_budget,
    describe,
    env_for,
    log_problems,
    start_launch,
    start_worker,
    trials,
    wait_for,
    worker_pids,
)

EXIT_LIMIT = 10.0


def _study(tmp_path: Path, name: str, n_trials: int, stop_grace: float) -> Path:
    return write_study(
        tmp_path,
        name,
        objective=helper_objective("slow"),
        search_space={"x": {"low": -5.0, "high": 5.0}},
        budget={"n_trials": n_trials},
        workers={
            "cpu": 2,
            "heartbeat_interval": 0.5,
            "heartbeat_grace": 3.0,
            "stop_grace": stop_grace,
        },
    )


def _running(name: str, url: str, count: int) -> bool:
    """``count`` trials have been taken by workers (the signal may come before the objective
    starts: the grace then counts from the trial's start)."""
    return sum(t.state is TrialState.RUNNING for t in trials(name, url)) >= count


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_launch_stops_requeues_and_resumes(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any, sig: signal.Signals
) -> None:
    """Trials too long for the grace are failed and re-queued; a relaunch finishes the budget
    with exactly the re-queued trials."""
    url = own_pg.url()
    n_trials = 3
    study_file = _study(tmp_path, study_name, n_trials, stop_grace=0.5)
    launch = start_launch(study_file, url, tmp_path / "launch.log", TUNER_TEST_STEP_SECONDS="2")
    try:
        wait_for(lambda: _running(study_name, url, 2), 60, "two running trials")
        sent = time.monotonic()
        launch.signal(sig)
        code = launch.wait(30)
        exited = time.monotonic() - sent
    finally:
        launch.kill()
    stopped = trials(study_name, url)
    assert code == 130, launch.output()
    assert exited <= EXIT_LIMIT, f"launch took {exited:.1f}s to exit"
    assert "Stopping workers" in launch.output()
    # Its workers are gone too (they run in sessions of their own: the launcher must end them).
    pids = worker_pids(stopped)
    assert len(pids) == 2 and not [p for p in pids if alive(p)], pids
    logs = tmp_path / "home" / "logs" / study_name
    assert not log_problems(logs), "\n".join(log_problems(logs))
    interrupted = [t for t in stopped if t.state is TrialState.FAIL]
    assert len(interrupted) == 2, describe(stopped)
    for trial in interrupted:  # the launcher forwards SIGTERM to its workers
        assert trial.user_attrs[FAIL_REASON] == "interrupted by SIGTERM"
    queued = [t for t in stopped if t.state is TrialState.WAITING]
    assert sorted(t.user_attrs[RETRY_OF] for t in queued) == sorted(t.number for t in interrupted)
    assert not [t for t in stopped if t.state is TrialState.RUNNING], describe(stopped)
    figures = {"seconds_to_exit": round(exited, 1), "requeued": len(queued)}
    if sig is signal.SIGINT:  # the same path as SIGTERM from here on: resumed once, below
        record(fault="SIGINT (Ctrl-C) to tuner launch", trials_lost=0, **figures)
        return

    resumed_at = time.monotonic()
    relaunch = run_tuner(
        "launch",
        str(study_file),
        "--storage",
        url,
        "--workers",
        "1",
        env=env_for(TUNER_TEST_STEP_SECONDS="0.02"),
    )
    resumed = time.monotonic() - resumed_at
    final = trials(study_name, url)
    assert relaunch.returncode == 0, relaunch.stdout + relaunch.stderr
    assert_exact_budget(final, n_trials)
    reruns = [t for t in final if RETRY_OF in t.user_attrs]
    assert len(reruns) == 2 and all(t.state is TrialState.COMPLETE for t in reruns)
    record(
        fault="SIGTERM to tuner launch, then a relaunch",
        trials_lost=0,
        seconds_relaunch_to_done=round(resumed, 1),
        **figures,
    )


def test_workers_stop_within_limit(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any
) -> None:
    """SIGTERM to a worker whose trial outlasts ``stop_grace``: failed and re-queued.
    Ctrl-C to one whose trial ends within it: the trial completes. Both exit in time."""
    url = own_pg.url()
    study_file = _study(tmp_path, study_name, n_trials=4, stop_grace=3.0)
    long = start_worker(study_file, url, tmp_path / "long.log", TUNER_TEST_STEP_SECONDS="2")
    short = start_worker(study_file, url, tmp_path / "short.log", TUNER_TEST_STEP_SECONDS="0.3")
    try:
        wait_for(lambda: _running(study_name, url, 2), 60, "both workers in a trial")
        sent = time.monotonic()
        long.signal(signal.SIGTERM)
        short.signal(signal.SIGINT)
        codes = [long.wait(30), short.wait(30)]
        exited = time.monotonic() - sent
    finally:
        long.kill()
        short.kill()
    stopped = trials(study_name, url)
    assert codes == [0, 0], long.output() + short.output()
    assert exited <= EXIT_LIMIT, f"workers took {exited:.1f}s to exit"
    by_worker = {str(t.user_attrs.get("tuner:worker", "")).rsplit(":", 1)[-1]: t for t in stopped}
    interrupted, finished = by_worker[str(long.pid)], by_worker[str(short.pid)]
    assert interrupted.state is TrialState.FAIL, describe(stopped)
    assert interrupted.user_attrs[FAIL_REASON] == "interrupted by SIGTERM"
    assert finished.state is TrialState.COMPLETE, describe(stopped)
    waiting = [t for t in stopped if t.state is TrialState.WAITING]
    assert [t.user_attrs[RETRY_OF] for t in waiting] == [interrupted.number], describe(stopped)
    assert not [t for t in stopped if t.state is TrialState.RUNNING], describe(stopped)
    record(
        fault="SIGTERM / SIGINT to single workers (stop_grace 3s)",
        trials_lost=0,
        seconds_to_exit=round(exited, 1),
        outcomes="SIGTERM: FAIL + re-queued; SIGINT within grace: COMPLETE",
    )


def test_worker_blocked_in_one_long_step_stops_within_limit(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any
) -> None:
    """A trial stuck in one 15 s call (a long epoch, a blocking read) when SIGTERM comes: the
    grace (1 s) runs out, the trial must be interrupted and the worker exit within 10 s."""
    url = own_pg.url()
    study_file = _study(tmp_path, study_name, n_trials=1, stop_grace=1.0)
    stuck = start_worker(study_file, url, tmp_path / "stuck.log", TUNER_TEST_STEP_SECONDS="15")
    try:
        wait_for(lambda: _running(study_name, url, 1), 60, "the trial to start")
        time.sleep(1.0)  # inside the first step
        sent = time.monotonic()
        stuck.signal(signal.SIGTERM)
        code = stuck.wait(60)
        exited = time.monotonic() - sent
    finally:
        stuck.kill()
    final = trials(study_name, url)
    record(
        fault="SIGTERM to a worker blocked in one 15 s call (stop_grace 1s)",
        trials_lost=0,
        seconds_to_exit=round(exited, 1),
    )
    assert code == 0, stuck.output()
    assert [t.user_attrs.get(FAIL_REASON) for t in final if t.state is TrialState.FAIL] == [
        "interrupted by SIGTERM"
    ], describe(final)
    assert exited <= EXIT_LIMIT, f"worker took {exited:.1f}s to exit"
