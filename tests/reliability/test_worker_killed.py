"""Issue 6, point 1: a worker killed with SIGKILL mid-trial loses nothing.

Workers are started as ``tuner launch`` starts them; the victim is found the way an operator
would: the RUNNING trial's ``tuner:worker`` attribute is ``host:pid``.
"""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import Any

from helpers.study import write_study
from optuna.trial import FrozenTrial, TrialState

import tuner
from tuner import _context
from tuner.fleet import WorkerRecord, WorkerState, open_study, reap_stale_trials
from tuner.fleet._records import save_record
from tuner.spec import load_spec
from tuner.storage import open_artifact_store, open_storage

from ._fleet import (
    FAIL_REASON,
    RETRY_OF,
    WORKER,
    assert_exact_budget,
    describe,
    start_worker,
    trials,
    wait_for,
)

GRACE = 3.0
INTERVAL = 0.5
STEP_SECONDS = "0.3"
# The victim's trial holds once it has saved two steps: the kill always lands mid-trial.
VICTIM_HOLD = 2


def _study(tmp_path: Path, name: str, **budget: Any) -> Path:
    return write_study(
        tmp_path,
        name,
        objective={
            "model": "helpers.objectives:checkpointed",
            "metric": "loss",
            "direction": "minimize",
        },
        search_space={"x": {"low": -5.0, "high": 5.0}},
        budget=budget,
        workers={"heartbeat_interval": INTERVAL, "heartbeat_grace": GRACE},
    )


def _running_with_checkpoint(
    name: str, url: str, pid: int | None = None, **attrs: Any
) -> FrozenTrial | None:
    """A RUNNING trial (of worker ``pid``, with the given user attributes) that has saved two
    or more steps."""
    for trial in trials(name, url):
        if (
            trial.state is TrialState.RUNNING
            and len(trial.intermediate_values) >= 2
            and (pid is None or str(trial.user_attrs.get(WORKER, "")).endswith(f":{pid}"))
            and all(trial.user_attrs.get(k) == v for k, v in attrs.items())
        ):
            return trial
    return None


def _running(name: str, url: str) -> FrozenTrial | None:
    return next((t for t in trials(name, url) if t.state is TrialState.RUNNING), None)


def _kill_owner(trial: FrozenTrial) -> float:
    """SIGKILL the worker process named in the trial's ``tuner:worker`` attribute."""
    pid = int(str(trial.user_attrs[WORKER]).rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def _failed(name: str, url: str, number: int) -> FrozenTrial | None:
    trial = next(t for t in trials(name, url) if t.number == number)
    return trial if trial.state is TrialState.FAIL else None


def _checkpoint_step(own_pg: Any, name: str, number: int) -> int:
    """The step of the checkpoint trial ``number`` saved last, read from the artifact table."""
    import torch

    rows = own_pg.execute(
        f"SELECT body FROM tuner_artifacts WHERE artifact_id = 'checkpoint-{name}-{number}.pt'",
        own_pg.database,
    )
    assert rows, f"trial {number} saved no checkpoint"
    return int(torch.load(io.BytesIO(bytes(rows[0][0])), weights_only=False)["step"])


def test_killed_worker_trial_fails_and_reruns_from_checkpoint(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any
) -> None:
    """The only other worker is busy in a long trial: the lost trial still fails within the
    grace (that worker's heartbeat thread reaps it), and a worker started later re-runs it
    from its checkpoint."""
    url = own_pg.url()
    study_file = _study(tmp_path, study_name, n_trials=2, max_retries=2)
    busy = start_worker(study_file, url, tmp_path / "busy.log", TUNER_TEST_STEP_SECONDS="2.5")
    workers = [busy]
    try:
        wait_for(lambda: _running(study_name, url), 60, "the busy worker's trial")
        victim_worker = start_worker(
            study_file,
            url,
            tmp_path / "victim.log",
            TUNER_TEST_STEP_SECONDS=STEP_SECONDS,
            TUNER_TEST_HOLD_AT_STEP=str(VICTIM_HOLD),
        )
        workers.append(victim_worker)
        victim = wait_for(
            lambda: _running_with_checkpoint(study_name, url, victim_worker.pid),
            60,
            "a trial with a checkpoint",
        )
        killed_at = _kill_owner(victim)
        saved_step = _checkpoint_step(own_pg, study_name, victim.number)
        failed = wait_for(
            lambda: _failed(study_name, url, victim.number), 30, "the killed trial to fail"
        )
        detected = time.monotonic() - killed_at
        busy_still_running = busy.popen.poll() is None and _running(study_name, url)
        finisher = start_worker(
            study_file, url, tmp_path / "finisher.log", TUNER_TEST_STEP_SECONDS=STEP_SECONDS
        )
        workers.append(finisher)
        wait_for(
            lambda: any(
                t.user_attrs.get(RETRY_OF) == victim.number and t.state.is_finished()
                for t in trials(study_name, url)
            ),
            60,
            "the re-run to finish",
        )
        rerun_done = time.monotonic() - killed_at
        assert finisher.wait(60) == 0, finisher.output()
        assert busy.wait(60) == 0, busy.output()
    finally:
        for worker in workers:
            worker.kill()

    assert busy_still_running, "the busy worker finished its trial before the reaping"
    assert "lost" in failed.user_attrs[FAIL_REASON], failed.user_attrs
    assert detected <= GRACE + INTERVAL + 1.5, f"trial failed {detected:.1f}s after the kill"
    final = trials(study_name, url)
    rerun = next(t for t in final if t.user_attrs.get(RETRY_OF) == victim.number)
    assert rerun.state is TrialState.COMPLETE, describe(final)
    assert rerun.user_attrs[WORKER].endswith(f":{finisher.pid}")
    assert rerun.params == victim.params
    assert rerun.user_attrs["tuner:attempt"] == 1
    assert saved_step == VICTIM_HOLD
    assert rerun.user_attrs["start_step"] == saved_step
    assert min(rerun.intermediate_values) == saved_step, rerun.intermediate_values
    assert_exact_budget(final, 2)
    record(
        fault="worker SIGKILL mid-trial",
        trials_lost=0,
        seconds_to_fail=round(detected, 1),
        seconds_to_rerun_complete=round(rerun_done, 1),
        resumed_at_step=saved_step,
        finished=len([t for t in final if t.state.is_finished()]),
    )


def _running_rerun(name: str, url: str, number: int) -> FrozenTrial | None:
    """The re-run of trial ``number`` while a worker runs it."""
    return next(
        (
            t
            for t in trials(name, url)
            if t.state is TrialState.RUNNING and t.user_attrs.get(RETRY_OF) == number
        ),
        None,
    )


def test_retries_stop_at_max_retries(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any
) -> None:
    """The original and its one allowed re-run are both killed: the trial fails for good.

    Steps of 1 s: the re-run resumes after the original's checkpoint, so it runs only the steps
    left, and must stay RUNNING long enough for a poll of a loaded machine to see it.
    """
    url = own_pg.url()
    study_file = _study(tmp_path, study_name, n_trials=3, max_retries=1)
    workers = [
        start_worker(study_file, url, tmp_path / f"worker-{i}.log", TUNER_TEST_STEP_SECONDS="1.0")
        for i in range(3)
    ]
    try:
        first = wait_for(
            lambda: _running_with_checkpoint(study_name, url), 60, "a trial with a checkpoint"
        )
        _kill_owner(first)
        rerun = wait_for(
            lambda: _running_rerun(study_name, url, first.number), 60, "the re-run to be running"
        )
        killed_at = _kill_owner(rerun)
        wait_for(lambda: _failed(study_name, url, rerun.number), 30, "the re-run to fail")
        detected = time.monotonic() - killed_at
        for worker in workers:
            if worker.popen.poll() is None:
                assert worker.wait(60) == 0, worker.output()
    finally:
        for worker in workers:
            worker.kill()

    final = trials(study_name, url)
    assert not [t for t in final if t.user_attrs.get(RETRY_OF) == rerun.number], describe(final)
    last = next(t for t in final if t.number == rerun.number)
    assert last.state is TrialState.FAIL and "lost" in last.user_attrs[FAIL_REASON]
    assert last.user_attrs["tuner:attempt"] == 1
    assert_exact_budget(final, 3)
    record(
        fault="worker SIGKILL twice, max_retries=1",
        trials_lost=0,
        seconds_to_fail=round(detected, 1),
        attempts=2,
    )


def test_builtin_objective_rerun_resumes_from_its_epoch_checkpoint(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any
) -> None:
    """The built-in LSTM checkpoints every epoch; its re-run trains only the epochs left."""
    url = own_pg.url()
    epochs = 30
    study_file = write_study(
        tmp_path,
        study_name,
        objective={
            "model": "lstm",
            "task": "classification",
            "dataset": "italy_power_demand",
            "metric": "val_accuracy",
            "epochs": epochs,
            "batch_size": 16,
            "hidden_size": 16,
            "patience": epochs,
        },
        search_space={"lr": {"low": 1e-3, "high": 3e-2, "log": True}},
        budget={"n_trials": 1},
        workers={"heartbeat_interval": INTERVAL, "heartbeat_grace": GRACE},
    )
    workers = [start_worker(study_file, url, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        victim = wait_for(
            lambda: next(
                (
                    t
                    for t in trials(study_name, url)
                    if t.state is TrialState.RUNNING and len(t.intermediate_values) >= 3
                ),
                None,
            ),
            60,
            "three trained epochs",
        )
        killed_at = _kill_owner(victim)
        saved_epoch = _checkpoint_step(own_pg, study_name, victim.number)
        survivor = next(w for w in workers if not victim.user_attrs[WORKER].endswith(f":{w.pid}"))
        assert survivor.wait(90) == 0, survivor.output()
        recovered = time.monotonic() - killed_at
    finally:
        for worker in workers:
            worker.kill()

    final = trials(study_name, url)
    assert_exact_budget(final, 1)
    rerun = next(t for t in final if t.user_attrs.get(RETRY_OF) == victim.number)
    assert rerun.state is TrialState.COMPLETE, describe(final)
    assert 1 <= saved_epoch < epochs, saved_epoch
    assert f"trial {rerun.number} resumes after epoch {saved_epoch}" in survivor.output()
    assert sorted(rerun.intermediate_values) == list(range(1, epochs + 1))
    for epoch, value in victim.intermediate_values.items():  # the curve before the kill stands
        if epoch <= saved_epoch:
            assert rerun.intermediate_values[epoch] == value
    record(
        fault="worker SIGKILL mid-trial, built-in LSTM",
        trials_lost=0,
        resumed_after_epoch=saved_epoch,
        epochs=epochs,
        seconds_kill_to_study_end=round(recovered, 1),
    )


def test_rerun_of_a_rerun_that_saved_nothing_resumes_from_the_original(
    tmp_path: Path, own_pg: Any, study_name: str
) -> None:
    """Attempt 1 dies before its first checkpoint: attempt 2 still resumes from the original's.

    The reaper's own path makes the re-runs (``tuner:retry_of`` names only the attempt before),
    so ``tuner.load_checkpoint`` has to follow the chain back.
    """
    url = own_pg.url()
    spec = load_spec(_study(tmp_path, study_name, n_trials=1, max_retries=2))
    study = open_study(spec, open_storage(url, reconnect_seconds=10))
    context = _context.TrialContext(spec, open_artifact_store(url), "host:1")
    now = time.time()
    dead = WorkerRecord("host:1", "host", 1, None, WorkerState.RUNNING, now - 60, now - 120)
    save_record(study, dead)

    original = study.ask()
    original.set_user_attr(WORKER, dead.id)
    with _context.running(context):
        tuner.save_checkpoint(original, 3, {"value": 1.5})
    assert reap_stale_trials(study, spec, now=time.time()) == [original.number]
    first_rerun = study.ask()  # taken by a worker that dies before saving anything
    first_rerun.set_user_attr(WORKER, dead.id)
    assert reap_stale_trials(study, spec, now=time.time()) == [first_rerun.number]
    second_rerun = study.ask()

    assert second_rerun.user_attrs[RETRY_OF] == first_rerun.number
    assert second_rerun.user_attrs["tuner:attempt"] == 2
    with _context.running(context):
        assert tuner.load_checkpoint(second_rerun) == (3, {"value": 1.5})
