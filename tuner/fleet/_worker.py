"""One worker: join a study and run trials until the fleet's budget is spent.

A worker needs only the study file and the storage; all shared state lives in the storage.
Its loop: under the study lock, decide (run, wait or stop) and take a trial; outside it,
sample the search space, call the objective, and record the outcome. A heartbeat thread keeps
the worker's record fresh so that others can re-run its trial if it dies.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import optuna
from optuna.trial import TrialState

from tuner import _context
from tuner.errors import FleetError
from tuner.fleet._budget import (
    Ledger,
    Step,
    fail_and_requeue,
    next_step,
    reap_stale_trials,
    void_trial,
)
from tuner.fleet._records import (
    FAIL_REASON_ATTR,
    GPU_ATTR,
    WORKER_ATTR,
    WorkerRecord,
    WorkerState,
    load_records,
    save_record,
)
from tuner.fleet._study import open_study
from tuner.spec import StudySpec, suggest
from tuner.storage import LockLost, StudyLock, open_artifact_store, open_storage

_log = logging.getLogger(__name__)

Objective = Callable[[optuna.Trial], float]


class WorkerInterrupted(Exception):
    """Raised inside a running trial when the worker was asked to stop and its grace ran out."""


@dataclass
class WorkerReport:
    """What one worker did, returned when it exits."""

    worker_id: str
    trials_run: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    stop_reason: str = ""


class _StopSignal:
    """SIGTERM/SIGINT handling: finish the trial within the grace period, else interrupt it."""

    def __init__(self, grace: float) -> None:
        self.requested = threading.Event()
        self._grace = grace
        self._in_trial = False
        self._timer: threading.Timer | None = None
        self._signum = signal.SIGTERM

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set() and self._in_trial:
            raise WorkerInterrupted(f"interrupted by {signal.Signals(signum).name}")
        self.requested.set()
        self._signum = signum
        if self._in_trial:
            self._start_timer(signum)

    def _start_timer(self, signum: int) -> None:
        _log.warning("stop requested; the running trial has %gs to finish", self._grace)
        # Sent to the main thread itself: a signal raised in the timer's thread would wait for
        # the main thread's current call (a sleep, a blocking read) to return by itself.
        main = threading.main_thread().ident
        self._timer = threading.Timer(self._grace, signal.pthread_kill, (main, signum))
        self._timer.daemon = True
        self._timer.start()

    def trial_running(self, running: bool) -> None:
        self._in_trial = running
        if running and self.requested.is_set() and self._timer is None:
            # The stop came while the trial was being taken: it gets its grace from now.
            self._start_timer(self._signum)
        if not running and self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Heartbeat(threading.Thread):
    """Refreshes the worker's record every ``interval`` seconds until stopped.

    After each beat it calls ``reap`` (if given), so that a dead worker's trial is failed and
    re-queued within the heartbeat grace even while every live worker is busy with a trial.
    """

    def __init__(
        self,
        study: optuna.Study,
        record: WorkerRecord,
        interval: float,
        reap: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="tuner-heartbeat", daemon=True)
        self._study = study
        self.record = record
        self._interval = interval
        self._reap = reap
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def update(self, **changes: object) -> None:
        # Written under the lock, so an older record never overwrites a newer one.
        with self._lock:
            self.record = self.record.beat(**changes)
            self._write(self.record)

    def _write(self, record: WorkerRecord) -> None:
        try:
            save_record(self._study, record)
        except Exception as exc:  # a database outage must not kill the worker
            _log.warning("heartbeat not written: %s", exc)

    def run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.update()
            if self._reap is not None and not self._stopping.is_set():
                self._reap()

    def stop(self) -> None:
        self._stopping.set()


def run_worker(
    spec: StudySpec,
    storage_url: str,
    objective: Objective,
    *,
    gpu: str | None = None,
    poll_seconds: float = 1.0,
    handle_signals: bool = True,
    on_study_done: Callable[[optuna.Study], None] | None = None,
) -> WorkerReport:
    """Run trials of ``spec``'s study from the storage at ``storage_url`` until none are left.

    Args:
        spec: the validated study file.
        storage_url: where the study lives (any number of workers may share it).
        objective: called with a trial whose search space is already sampled.
        gpu: the GPU this process is pinned to, recorded on its trials.
        poll_seconds: how often to look again while other workers' trials are running.
        handle_signals: install SIGTERM/SIGINT handlers (main thread only).
        on_study_done: called once the budget is spent, under the study lock, by every
            worker that sees the end (it must be idempotent), e.g. to score the test split.

    Raises:
        FleetError: the study was halted because too many of its first trials failed.
        StorageError: the storage cannot be reached.
    """
    workers = spec.workers
    # Through a database outage every call waits (up to ``reconnect``), retrying at least once
    # per heartbeat interval so that heartbeats resume as soon as the database is back.
    reconnect = max(120.0, 4 * workers.heartbeat_grace)
    backoff = min(5.0, workers.heartbeat_interval)
    storage = open_storage(
        storage_url,
        pool_size=2,
        wait_seconds=60.0,
        reconnect_seconds=reconnect,
        max_backoff=backoff,
    )
    lock = StudyLock(storage_url, spec.name, wait_seconds=reconnect, max_backoff=backoff)
    reaper_lock = StudyLock(storage_url, spec.name)
    record = WorkerRecord.for_this_process(gpu)
    worker_id = record.id
    with lock.hold():
        study = open_study(spec, storage)
        seed_offset = len(load_records(study))
        save_record(study, record)
    study = open_study(spec, storage, seed_offset)
    artifacts = open_artifact_store(storage_url, reconnect, backoff)
    context = _context.TrialContext(spec, artifacts, worker_id, gpu)
    stop = _StopSignal(workers.stop_grace)
    if handle_signals:
        stop.install()

    def reap() -> None:
        try:
            with reaper_lock.try_hold() as held:
                if held:
                    reap_stale_trials(study, spec, now=time.time())
        except Exception as exc:  # the next beat tries again
            _log.warning("stale trials not checked: %s", exc)

    heartbeat = _Heartbeat(study, record, workers.heartbeat_interval, reap)
    heartbeat.update()
    heartbeat.start()
    report = WorkerReport(worker_id)
    ledger = Ledger()
    _log.info("worker %s joined study %s", worker_id, spec.name)
    try:
        while not stop.requested.is_set():
            trial = None
            try:
                with lock.hold():
                    step, why = next_step(study, spec, ledger=ledger)
                    if step is Step.RUN:
                        # The decision holds only if the lock did throughout: leaving the
                        # block raises LockLost if its session ended, and the trial is void.
                        trial = study.ask()
                        trial.set_user_attr(WORKER_ATTR, worker_id)
                        trial.set_user_attr(GPU_ATTR, gpu)
            except (LockLost, optuna.exceptions.UpdateFinishedTrialError) as exc:
                # A database outage cut the lock's session: another worker may have decided
                # at the same time, so a trial taken here gives its budget slot up.
                _log.warning("study lock lost (%s); deciding again", exc)
                if trial is not None:
                    _void_quietly(study, trial.number)
                continue
            if step is Step.DONE:
                report.stop_reason = why
                if why.startswith("halted"):
                    raise FleetError(f"study {spec.name} {why}")
                if on_study_done is not None:
                    with lock.hold(), _context.running(context):
                        on_study_done(study)
                break
            if trial is None:
                heartbeat.update(state=WorkerState.IDLE, trial=None)
                stop.requested.wait(poll_seconds)
                continue
            heartbeat.update(state=WorkerState.RUNNING, trial=trial.number)
            stop.trial_running(True)
            try:
                state = _run_trial(study, spec, trial, objective, context)
            except WorkerInterrupted as exc:
                report.stop_reason = str(exc)
                break
            finally:
                stop.trial_running(False)
            report.trials_run += 1
            report.outcomes[state.name] = report.outcomes.get(state.name, 0) + 1
            heartbeat.update(state=WorkerState.IDLE, trial=None)
        else:
            report.stop_reason = report.stop_reason or "stop requested"
    finally:
        heartbeat.stop()
        heartbeat.update(state=WorkerState.STOPPED, trial=None)
        lock.close()
        reaper_lock.close()
    _log.info("worker %s stops: %s", worker_id, report.stop_reason)
    return report


def _run_trial(
    study: optuna.Study,
    spec: StudySpec,
    trial: optuna.Trial,
    objective: Objective,
    context: _context.TrialContext,
) -> TrialState:
    """Sample, run and record one trial; a failing objective fails only this trial."""
    try:
        suggest(trial, spec.search_space)
        with _context.running(context):
            value = objective(trial)
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"objective returned {value}")
    except optuna.TrialPruned:
        return _tell(study, trial, TrialState.PRUNED)
    except WorkerInterrupted as exc:
        frozen = study._storage.get_trial(trial._trial_id)
        fail_and_requeue(study, spec, frozen, str(exc))
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()[:1000]
        _log.warning("trial %d failed: %s", trial.number, reason)
        _release_accelerator_memory()
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
        return _tell(study, trial, TrialState.FAIL)
    return _tell(study, trial, TrialState.COMPLETE, value)


def _tell(
    study: optuna.Study, trial: optuna.Trial, state: TrialState, value: float | None = None
) -> TrialState:
    """Record the trial's outcome; returns the state it ends in.

    If the trial is already finished, that outcome stands: either this very call reached the
    database before a disconnect and was retried, or another worker failed the trial (and
    queued its re-run) while this worker could not show it was alive.
    """
    try:
        study.tell(trial, value, state=state)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        stored = study._storage.get_trial(trial._trial_id)
        if not stored.state.is_finished():
            raise
        _log.warning("trial %d was already recorded as %s", trial.number, stored.state.name)
        return stored.state
    return state


def _void_quietly(study: optuna.Study, number: int) -> None:
    """Void a trial taken under a lost lock, unless another worker already finished it."""
    with contextlib.suppress(ValueError, optuna.exceptions.UpdateFinishedTrialError):
        void_trial(study, number, "taken while the study lock was lost in a database outage")


def _release_accelerator_memory() -> None:
    """After a failed trial (an out-of-memory error above all), free cached GPU memory."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
