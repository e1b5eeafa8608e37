"""One worker: join a study and run trials until the fleet's budget is spent.

A worker needs only the study file and the storage; all shared state lives in the storage.
Its loop: under the study lock, decide (run, wait or stop) and take a trial; outside it,
sample the search space, call the objective, and record the outcome. A heartbeat thread keeps
the worker's record fresh so that others can re-run its trial if it dies.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import optuna
from optuna.trial import TrialState

from tuner import _context
from tuner.errors import FleetError
from tuner.fleet._budget import Step, fail_and_requeue, next_step
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
from tuner.storage import StudyLock, open_artifact_store, open_storage

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

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set() and self._in_trial:
            raise WorkerInterrupted(f"interrupted by {signal.Signals(signum).name}")
        self.requested.set()
        if self._in_trial:
            _log.warning("stop requested; the running trial has %.0fs to finish", self._grace)
            self._timer = threading.Timer(self._grace, signal.raise_signal, (signum,))
            self._timer.daemon = True
            self._timer.start()

    def trial_running(self, running: bool) -> None:
        self._in_trial = running
        if not running and self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Heartbeat(threading.Thread):
    """Refreshes the worker's record every ``interval`` seconds until stopped."""

    def __init__(self, study: optuna.Study, record: WorkerRecord, interval: float) -> None:
        super().__init__(name="tuner-heartbeat", daemon=True)
        self._study = study
        self.record = record
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def update(self, **changes: object) -> None:
        with self._lock:
            self.record = self.record.beat(**changes)
            record = self.record
        self._write(record)

    def _write(self, record: WorkerRecord) -> None:
        try:
            save_record(self._study, record)
        except Exception as exc:  # a database outage must not kill the worker
            _log.warning("heartbeat not written: %s", exc)

    def run(self) -> None:
        while not self._stop.wait(self._interval):
            self.update()

    def stop(self) -> None:
        self._stop.set()


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
    storage = open_storage(
        storage_url,
        pool_size=2,
        wait_seconds=60.0,
        reconnect_seconds=max(120.0, 4 * workers.heartbeat_grace),
    )
    lock = StudyLock(storage_url, spec.name)
    record = WorkerRecord.for_this_process(gpu)
    worker_id = record.id
    with lock.hold():
        study = open_study(spec, storage)
        seed_offset = len(load_records(study))
        save_record(study, record)
    study = open_study(spec, storage, seed_offset)
    context = _context.TrialContext(spec, open_artifact_store(storage_url), worker_id, gpu)
    stop = _StopSignal(workers.stop_grace)
    if handle_signals:
        stop.install()
    heartbeat = _Heartbeat(study, record, workers.heartbeat_interval)
    heartbeat.update()
    heartbeat.start()
    report = WorkerReport(worker_id)
    _log.info("worker %s joined study %s", worker_id, spec.name)
    try:
        while not stop.requested.is_set():
            with lock.hold():
                step, why = next_step(study, spec)
                trial = study.ask() if step is Step.RUN else None
                if trial is not None:
                    trial.set_user_attr(WORKER_ATTR, worker_id)
                    trial.set_user_attr(GPU_ATTR, gpu)
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
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    except WorkerInterrupted as exc:
        frozen = study._storage.get_trial(trial._trial_id)
        fail_and_requeue(study, spec, frozen, str(exc))
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()[:1000]
        _log.warning("trial %d failed: %s", trial.number, reason)
        _release_accelerator_memory()
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    study.tell(trial, value)
    return TrialState.COMPLETE


def _release_accelerator_memory() -> None:
    """After a failed trial (an out-of-memory error above all), free cached GPU memory."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
