"""``postgresql+journal://``: Optuna's journal in a PostgreSQL table (tuner/storage/_pg_*.py).

What a user relies on: many processes appending at once still produce one order that every
reader sees the same; a fleet keeps its exact budget and recovers a killed worker's trial;
``tuner status`` and optuna-dashboard read the studies; a running trial's reports, sent in
batches, reach other processes within a second.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest
from helpers.study import (
    helper_objective,
    load_trials,
    pg_url,
    run_tuner,
    scratch_database,
    tuner_cmd,
    tuner_env,
    write_study,
)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tuner.fleet._launch import WORKER_STORAGE_ENV
from tuner.storage import StorageKind, StudyLock, kind_of, open_artifact_store, open_storage
from tuner.storage._pg_journal import PostgresJournalStorage
from tuner.storage._pg_log import PostgresJournalBackend
from tuner.storage._pg_pending import publish_pending

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# A process that appends ``count`` tagged entries in batches of 1 to 4.
_APPENDER = """
import sys
from tuner.storage._pg_log import PostgresJournalBackend
url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
backend = PostgresJournalBackend(url)
i = 0
while i < count:
    size = min(1 + i % 4, count - i)
    backend.append_logs([{"writer": name, "i": i + k} for k in range(size)])
    i += size
"""


@pytest.fixture
def journal_url() -> Iterator[str]:
    """A ``postgresql+journal://`` URL on a database of its own, so the journal starts empty."""
    with scratch_database("tuner_journal") as name:
        url = pg_url(name).replace("postgresql+psycopg2://", "postgresql+journal://")
        yield url
        publish_pending(url)  # what the test's storages still hold, before the database goes


def test_the_url_is_its_own_kind_and_shares_postgresql_coordination(journal_url: str) -> None:
    assert kind_of(journal_url) is StorageKind.POSTGRESQL_JOURNAL
    assert isinstance(open_storage(journal_url), PostgresJournalStorage)
    lock = StudyLock(journal_url, "s")
    with lock.hold():  # an advisory lock on the same database
        pass
    lock.close()
    store = open_artifact_store(journal_url)
    store.write("a", io.BytesIO(b"checkpoint"))
    assert store.open_reader("a").read() == b"checkpoint"


def test_concurrent_appends_from_processes_form_one_total_order(journal_url: str) -> None:
    writers, count = 4, 150
    reader = PostgresJournalBackend(journal_url)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, journal_url, f"w{n}", str(count)], env=tuner_env()
        )
        for n in range(writers)
    ]
    seen_during: list[list[dict[str, object]]] = []
    while any(p.poll() is None for p in processes):
        seen_during.append(reader.read_logs(0))
    assert all(p.wait(60) == 0 for p in processes)

    final = reader.read_logs(0)
    assert len(final) == writers * count, "every entry is there exactly once"
    for n in range(writers):
        mine = [log["i"] for log in final if log["writer"] == f"w{n}"]
        assert mine == list(range(count)), f"writer w{n}'s entries keep their own order"
    for snapshot in seen_during:
        assert final[: len(snapshot)] == snapshot, "a read during appends is a prefix"
    assert PostgresJournalBackend(journal_url).read_logs(0) == final, "every reader agrees"
    assert reader.read_logs(len(final) - 5) == final[-5:]


def test_four_workers_keep_the_exact_budget_and_status_reads_it(
    tmp_path: Path, journal_url: str, study_name: str
) -> None:
    study_file = write_study(
        tmp_path,
        study_name,
        budget={"n_trials": 20},
        objective=helper_objective("slow"),
    )
    env = {**os.environ, "TUNER_TEST_STEP_SECONDS": "0.05"}
    launch = run_tuner(
        "launch", str(study_file), "--storage", journal_url, "--workers", "4", env=env
    )
    assert launch.returncode == 0, launch.stderr + launch.stdout

    trials = load_trials(study_name, journal_url)
    assert len(trials) == 20 and all(t.state in FINISHED for t in trials)
    assert len({t.user_attrs["tuner:worker"] for t in trials}) == 4, "all 4 workers took trials"
    assert all(len(t.intermediate_values) == 5 for t in trials), "batched reports all arrived"

    status = run_tuner("status", str(study_file), "--storage", journal_url, "--format", "json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["name"] == study_name and data["budget"]["finished"] == 20
    assert data["running"] == [] and len(data["workers"]) == 4


def test_batched_reports_reach_another_process_within_a_second(journal_url: str) -> None:
    writer = PostgresJournalStorage(journal_url, flush_seconds=0.3)
    study = optuna.create_study(storage=writer, study_name="batched")
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    for step in range(3):
        trial.report(float(step), step)
    assert writer.get_trial(trial._trial_id).intermediate_values == {0: 0.0, 1: 1.0, 2: 2.0}, (
        "the writer reads its own batched writes at once"
    )

    reader = PostgresJournalStorage(journal_url)
    deadline = time.monotonic() + 5
    while reader.get_trial(trial._trial_id).intermediate_values != {0: 0.0, 1: 1.0, 2: 2.0}:
        assert time.monotonic() < deadline, "the batch never reached the database"
        time.sleep(0.05)
    assert "x" in reader.get_trial(trial._trial_id).params

    study.tell(trial, 1.5)
    assert writer.get_trial(trial._trial_id).state is TrialState.COMPLETE
    with pytest.raises(UpdateFinishedTrialError):
        writer.set_trial_intermediate_value(trial._trial_id, 3, 3.0)
    while reader.get_trial(trial._trial_id).state is not TrialState.COMPLETE:
        assert time.monotonic() < deadline + 5, "the final state never reached the database"
        time.sleep(0.05)
    assert reader.get_trial(trial._trial_id).value == 1.5


def test_writes_under_a_study_lock_are_visible_once_it_is_released(journal_url: str) -> None:
    writer = PostgresJournalStorage(journal_url, flush_seconds=60.0)  # no timer flush here
    reader = PostgresJournalStorage(journal_url)
    study = optuna.create_study(storage=writer, study_name="locked")
    lock = StudyLock(journal_url, "locked")
    with lock.hold():
        trial = study.ask()  # created at once: the id is needed
        trial.set_user_attr("tuner:worker", "host:1")
        writer.set_study_system_attr(study._study_id, "tuner:started_at", 1.0)
        assert reader.get_trial(trial._trial_id).user_attrs == {}, "still pending"
        assert writer.get_trial(trial._trial_id).user_attrs == {"tuner:worker": "host:1"}
    lock.close()
    assert reader.get_trial(trial._trial_id).user_attrs == {"tuner:worker": "host:1"}
    assert reader.get_study_system_attrs(study._study_id)["tuner:started_at"] == 1.0


def test_under_a_study_lock_the_journal_is_read_once_and_afresh_after(journal_url: str) -> None:
    study = optuna.create_study(storage=PostgresJournalStorage(journal_url), study_name="once")
    # Another process's writer: not one of this process's storages, so no lock reaches it.
    other = optuna.storages.JournalStorage(PostgresJournalBackend(journal_url))
    theirs = optuna.load_study(study_name="once", storage=other)
    lock = StudyLock(journal_url, "once")
    theirs.add_trial(optuna.trial.create_trial(value=0.0))
    with lock.hold():
        assert len(study.get_trials()) == 1, "the first read under the lock is fresh"
        theirs.add_trial(optuna.trial.create_trial(value=1.0))
        assert len(study.get_trials()) == 1, "later reads under the lock come from memory"
        study.ask()  # an own write reads back everything before it
        assert [t.number for t in study.get_trials()] == [0, 1, 2]
        theirs.add_trial(optuna.trial.create_trial(value=3.0))
    lock.close()
    assert [t.number for t in study.get_trials()] == [0, 1, 2, 3], "read afresh after release"


def test_waiting_and_running_trials_are_found_among_many_finished(journal_url: str) -> None:
    storage = PostgresJournalStorage(journal_url)
    study = optuna.create_study(storage=storage, study_name="many")
    study.add_trials([optuna.trial.create_trial(value=float(i)) for i in range(50)])
    running = study.ask()
    study.enqueue_trial({"x": 0.5})
    other = optuna.create_study(storage=storage, study_name="other")
    other.ask()

    found = study.get_trials(states=(TrialState.RUNNING,))
    assert [t.number for t in found] == [running.number]
    assert [t.number for t in study.get_trials(states=(TrialState.WAITING,))] == [51]
    study.tell(running, 1.0)
    assert study.get_trials(states=(TrialState.RUNNING,)) == []
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 51


def test_listing_every_trial_follows_another_processs_changes(journal_url: str) -> None:
    mine = PostgresJournalStorage(journal_url)
    other = PostgresJournalStorage(journal_url, flush_seconds=0)
    study = optuna.create_study(storage=mine, study_name="listed")
    theirs = optuna.load_study(study_name="listed", storage=other)
    study.add_trials([optuna.trial.create_trial(value=float(i)) for i in range(5)])
    running = theirs.ask()
    theirs.enqueue_trial({"x": 0.5})
    before = study.get_trials(deepcopy=False)

    running.suggest_float("x", 0.0, 1.0)
    running.report(0.3, 1)
    theirs.tell(running, 2.0)
    popped = theirs.ask()  # the queued trial
    theirs.tell(popped, state=TrialState.PRUNED)
    theirs.add_trial(optuna.trial.create_trial(value=9.0))
    mine_running = study.ask()
    mine_running.report(0.7, 1)  # pending in this process, read as if stored

    def seen(trials: list[optuna.trial.FrozenTrial]) -> list[tuple]:
        return [(t.number, t.state, t.values, t.params, t.intermediate_values) for t in trials]

    fresh = optuna.storages.JournalStorage(PostgresJournalBackend(journal_url))
    publish_pending(journal_url)
    expected = seen(fresh.get_all_trials(study._study_id))
    assert seen(study.get_trials(deepcopy=False)) == expected
    assert [t.state for t in before[5:]] == [TrialState.RUNNING, TrialState.WAITING], (
        "a list returned earlier is not changed by later calls"
    )
    assert [t.number for t in study.get_trials(states=(TrialState.RUNNING,))] == [8]
    optuna.delete_study(study_name="listed", storage=other)
    with pytest.raises(KeyError):
        mine.get_all_trials(study._study_id)


def test_optuna_dashboard_reads_the_study(journal_url: str) -> None:
    study = optuna.create_study(storage=open_storage(journal_url), study_name="shown")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    publish_pending(journal_url)  # as at the writing process's exit

    app = optuna_dashboard.wsgi(open_storage(journal_url))
    body = _get(app, "/api/studies")
    assert [s["study_name"] for s in body["study_summaries"]] == ["shown"]
    detail = _get(app, f"/api/studies/{body['study_summaries'][0]['study_id']}")
    assert len(detail["trials"]) == 3 and all(t["state"] == "Complete" for t in detail["trials"])


def _get(app: object, path: str) -> dict[str, object]:
    environ: dict[str, object] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    chunks = app(environ, lambda s, headers, exc_info=None: status.append(s))  # type: ignore[operator]
    assert status[0].startswith("200"), status
    return json.loads(b"".join(chunks))


def test_a_killed_workers_trial_is_failed_and_rerun(
    tmp_path: Path, journal_url: str, study_name: str
) -> None:
    study_file = write_study(
        tmp_path,
        study_name,
        search_space={"x": {"low": -5.0, "high": 5.0}},
        budget={"n_trials": 3},
        objective=helper_objective("slow"),
        workers={"heartbeat_interval": 0.5, "heartbeat_grace": 2.0},
    )
    env = {**tuner_env(), WORKER_STORAGE_ENV: journal_url, "TUNER_TEST_STEP_SECONDS": "0.4"}
    victim = subprocess.Popen(
        tuner_cmd("worker", str(study_file)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(
            t.state is TrialState.RUNNING and len(t.intermediate_values) >= 1
            for t in _trials(study_name, journal_url)
        ):
            assert time.monotonic() < deadline, "the first worker never reported"
            time.sleep(0.1)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    killed = next(t for t in _trials(study_name, journal_url) if t.state is TrialState.RUNNING)

    rescuer = subprocess.run(
        tuner_cmd("worker", str(study_file)), env=env, capture_output=True, text=True, timeout=120
    )
    assert rescuer.returncode == 0, rescuer.stderr

    trials = _trials(study_name, journal_url)
    lost = trials[killed.number]
    assert lost.state is TrialState.FAIL
    assert "lost" in lost.user_attrs["tuner:fail_reason"]
    rerun = [t for t in trials if t.user_attrs.get("tuner:retry_of") == killed.number]
    assert len(rerun) == 1 and rerun[0].state is TrialState.COMPLETE
    assert rerun[0].params == killed.params, "the re-run repeats the lost trial's parameters"
    counted = [t for t in trials if t.number != killed.number]
    assert len(counted) == 3 and all(t.state is TrialState.COMPLETE for t in counted)


def _trials(name: str, url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return load_trials(name, url)
    except KeyError:  # the worker has not created the study yet
        return []
