"""Issue 6, point 3: PostgreSQL stopped for 20 s and started again under a running fleet."""

from __future__ import annotations

import io
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from helpers.study import write_study
from optuna.trial import TrialState

from tuner.fleet import WorkerRecord, WorkerState, open_study, reap_stale_trials, tally
from tuner.fleet._records import WORKER_ATTR, save_record
from tuner.spec import load_spec
from tuner.storage import LockLost, PostgresArtifactStore, StudyLock, open_storage

from ._fleet import assert_exact_budget, describe, log_problems, start_launch, trials, wait_for

OUTAGE_SECONDS = 20.0
PASSWORD = "0utagePw"
INTERVAL = 0.5  # heartbeat_interval: the most a worker waits between retries in an outage
# What a forced terminal makes ``tuner launch`` draw: the live progress line, as a user sees it.
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "200", "NO_COLOR": "1"}
RETRY_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) WARNING .*database unreachable during "
    r".*; retrying in (?P<delay>[\d.]+)s$",
    re.M,
)


def _accepts_connections(server: Any) -> bool:
    try:
        psycopg2.connect(
            host=server.host,
            port=server.port,
            user="postgres",
            dbname="postgres",
            connect_timeout=2,
        ).close()
    except psycopg2.OperationalError:
        return False
    return True


def _stay_down(server: Any, seconds: float) -> float:
    """Keep the stopped server down for ``seconds``, checking each second that nothing answers
    on its port; return how long it was seen down."""
    seen_down = time.monotonic()
    deadline = seen_down + seconds
    while time.monotonic() < deadline:
        assert not _accepts_connections(server), "the server answered during the outage"
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    assert not _accepts_connections(server), "the server answered at the end of the outage"
    return time.monotonic() - seen_down


def _retries(log_text: str) -> list[tuple[float, float]]:
    """``(wall-clock time, delay)`` of each "retrying in ..." warning in a worker log."""
    return [
        (datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp(), float(m["delay"]))
        for m in RETRY_LINE.finditer(log_text)
    ]


def test_fleet_waits_out_a_database_restart(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any
) -> None:
    own_pg.execute(f"CREATE ROLE outage_user LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    url = own_pg.url("outage_user", PASSWORD)
    n_trials = 8
    study_file = write_study(
        tmp_path,
        study_name,
        objective={
            "model": "helpers.objectives:checkpointed",
            "metric": "loss",
            "direction": "minimize",
        },
        search_space={"x": {"low": -5.0, "high": 5.0}},
        budget={"n_trials": n_trials},
        workers={"cpu": 2, "heartbeat_interval": INTERVAL, "heartbeat_grace": 3.0},
    )
    launch = start_launch(
        study_file, url, tmp_path / "launch.log", TUNER_TEST_STEP_SECONDS="0.2", **TERMINAL
    )
    try:
        wait_for(
            lambda: sum(t.state is TrialState.COMPLETE for t in trials(study_name, url)) >= 2,
            60,
            "two finished trials",
        )
        before = {t.number: (t.state, t.value) for t in trials(study_name, url)}
        assert launch.popen.poll() is None, launch.output()
        assert sum(s.is_finished() for s, _ in before.values()) < n_trials, "study already done"
        stopped_at = time.monotonic()
        own_pg.stop()
        outage = _stay_down(own_pg, OUTAGE_SECONDS)
        own_pg.start()
        restarted_at = time.monotonic()
        finished_before = {n for n, (state, _) in before.items() if state.is_finished()}
        wait_for(
            lambda: (
                len(
                    [
                        t
                        for t in trials(study_name, url)
                        if t.state.is_finished() and t.number not in finished_before
                    ]
                )
                > 0
            ),
            60,
            "a trial to finish after the restart",
        )
        recovered = time.monotonic() - restarted_at
        code = launch.wait(120)
        total = time.monotonic() - stopped_at
    finally:
        launch.kill()

    output = launch.output()
    final = trials(study_name, url)
    assert code == 0, output + describe(final)
    for number, (state, value) in before.items():
        if state.is_finished():
            kept = next(t for t in final if t.number == number)
            assert (kept.state, kept.value) == (state, value), f"trial {number} changed"
    assert_exact_budget(final, n_trials)
    assert all(t.state is TrialState.COMPLETE for t in final), describe(final)
    logs = tmp_path / "home" / "logs" / study_name
    assert not log_problems(logs), "\n".join(log_problems(logs))
    for text in [output, *(p.read_text() for p in logs.glob("*.log"))]:
        assert PASSWORD not in text
    # Each worker waited the outage out, retrying with backoff (0.25 s doubling, at most one
    # heartbeat interval apart), rather than failing or exiting.
    for log in sorted(logs.glob("worker-*.log")):
        retries = _retries(log.read_text())
        assert retries, f"{log.name}: the worker did not notice the outage"
        delays = sorted({delay for _, delay in retries})
        assert len(delays) >= 2 and delays[-1] <= INTERVAL, f"{log.name}: no backoff: {delays}"
        waited = retries[-1][0] - retries[0][0]
        assert waited >= OUTAGE_SECONDS - 3, f"{log.name}: retried for {waited:.1f}s only"
    assert "database unreachable; the workers wait for it" in output  # the live progress line
    record(
        fault=f"PostgreSQL stopped {OUTAGE_SECONDS:.0f}s mid-study",
        trials_lost=0,
        seconds_server_seen_down=round(outage, 1),
        finished_before_outage=len([s for s, _ in before.values() if s.is_finished()]),
        seconds_to_first_trial_after_restart=round(recovered, 1),
        seconds_outage_to_study_end=round(total, 1),
        trials=len(final),
        reruns=len([t for t in final if "tuner:retry_of" in t.user_attrs]),
    )


def test_lock_and_artifacts_wait_out_a_restart_and_a_lost_lock_is_noticed(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any
) -> None:
    """The pieces beside Optuna's storage that the fleet relies on, through a short restart."""
    url = own_pg.url()
    lock = StudyLock(url, study_name, wait_seconds=30, max_backoff=0.5)
    store = PostgresArtifactStore(url, reconnect_seconds=30, max_backoff=0.5)
    done: dict[str, float] = {}

    def use_during_outage() -> None:
        with lock.hold():
            done["lock"] = time.monotonic()
        store.write("a", io.BytesIO(b"checkpoint"))
        done["write"] = time.monotonic()

    own_pg.stop()
    worker = threading.Thread(target=use_during_outage)
    worker.start()
    _stay_down(own_pg, 2.0)
    assert not done, "used the database while it was down?"
    start_issued = time.monotonic()
    own_pg.start()
    accepting = time.monotonic() - start_issued  # at most: start() polls until a connect works
    worker.join(30)
    assert set(done) == {"lock", "write"}
    assert done["lock"] > start_issued
    assert store.open_reader("a").read() == b"checkpoint"

    # The lock's session dies while held (a restart would do the same): the holder is told.
    cut = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE query LIKE '%pg_advisory_xact_lock%' AND pid <> pg_backend_pid()"
    )
    with pytest.raises(LockLost), lock.hold():
        own_pg.execute(cut)  # noticed on leaving the block
    with lock.hold():  # and the next hold works
        pass
    lock.close()
    record(
        fault="PostgreSQL restart under the study lock and artifact store",
        trials_lost=0,
        # From ``pg_ctl start``: the server's own start-up is part of it.
        seconds_start_to_accepting=round(accepting, 2),
        seconds_start_to_lock=round(done["lock"] - start_issued, 2),
        seconds_start_to_artifact_write=round(done["write"] - start_issued, 2),
    )


def test_reaper_voids_unclaimed_trials_and_forgives_silence_during_an_outage(
    tmp_path: Path, own_pg: Any, study_name: str
) -> None:
    url = own_pg.url()
    spec = load_spec(write_study(tmp_path, study_name, budget={"n_trials": 3}))
    storage = open_storage(url, reconnect_seconds=10)
    study = open_study(spec, storage)
    now = time.time()
    stale = WorkerRecord("host:1", "host", 1, None, WorkerState.RUNNING, now - 60, now - 120)
    save_record(study, stale)
    claimed = study.ask()
    claimed.set_user_attr(WORKER_ATTR, stale.id)
    unclaimed = study.ask()  # taken, then its worker lost the lock: nobody runs it

    # The database just came back: a minute-old heartbeat is not evidence of a dead worker.
    storage.last_outage_end = now
    assert reap_stale_trials(study, spec, now=now + 1) == [unclaimed.number]
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[unclaimed.number].user_attrs["tuner:void"] is True
    assert by_number[claimed.number].state is TrialState.RUNNING
    counts = tally(study.get_trials())
    assert (counts.running, counts.failed, counts.replaced) == (1, 0, 1)

    # Past the grace after the outage, it is.
    assert reap_stale_trials(study, spec, now=now + spec.workers.heartbeat_grace + 1) == [
        claimed.number
    ]
    counts = tally(study.get_trials())
    assert (counts.running, counts.waiting, counts.failed) == (0, 1, 0)
