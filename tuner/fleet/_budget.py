"""The study's budget, counted over the whole fleet, and the decisions that keep it exact.

Every worker calls :func:`next_step` while holding the study lock, so "count, then start one
more trial" is atomic across hosts. ``n_trials`` counts finished trials (complete, pruned and
failed for good); a failed trial that is re-run is replaced by its re-run. Trials that are
running or queued count too, because they will finish.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from enum import Enum

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.fleet._records import (
    ATTEMPT_ATTR,
    FAIL_REASON_ATTR,
    HALTED_ATTR,
    RETRY_OF_ATTR,
    STARTED_AT_ATTR,
    VOID_ATTR,
    WINDOW_START_ATTR,
    WORKER_ATTR,
    WorkerRecord,
    WorkerState,
    load_records,
    save_record,
    set_study_attr,
    study_attrs,
)
from tuner.spec import StudySpec

_log = logging.getLogger(__name__)


class Step(Enum):
    """What a worker does next."""

    RUN = "run"  # start (or pop) one trial now
    WAIT = "wait"  # the budget is taken, but running trials may still fail and be re-run
    DONE = "done"  # nothing is left for this study


@dataclass(frozen=True)
class Tally:
    """Trial counts as the budget sees them."""

    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    replaced: int  # failed trials that were re-run, and void trials; they do not count

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


class Ledger:
    """One process's running count of a study's trials, so each decision reads only news.

    A finished trial never changes again, and whether a re-run replaces it is written on the
    re-run when that is queued. So the ledger counts each trial once, when it is first seen
    finished, and afterwards looks only at trials it has not seen and those still unfinished:
    a decision costs the same at trial 10,000 as at trial 10. A worker keeps one ledger for
    its whole life; one-off readers (``tuner status``) use :func:`tally`.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._seen = 0  # trials numbered below this have been looked at
        self._unfinished: set[int] = set()
        self._finished: Counter[TrialState] = Counter()  # among trials not replaced
        self.replaced: set[int] = set()
        self._window_clear_from: int | None = None  # see :meth:`failure_halt`

    def update(self, trials: list[FrozenTrial]) -> Tally:
        """Take in ``trials`` (every trial of the study) and count them."""
        trials = _in_number_order(trials)
        if len(trials) < self._seen:  # not the study this ledger was counting
            self._reset()
        for number in range(self._seen, len(trials)):
            trial = trials[number]
            self._unfinished.add(number)
            target = trial.user_attrs.get(RETRY_OF_ATTR)
            if target is not None:
                self._replace(trials, int(target))
        self._seen = len(trials)
        for number in list(self._unfinished):
            trial = trials[number]
            if not trial.state.is_finished():
                continue
            self._unfinished.discard(number)
            if trial.user_attrs.get(VOID_ATTR):
                self.replaced.add(number)
            elif number not in self.replaced:
                self._finished[trial.state] += 1
        waiting = sum(1 for n in self._unfinished if trials[n].state is TrialState.WAITING)
        return Tally(
            complete=self._finished[TrialState.COMPLETE],
            pruned=self._finished[TrialState.PRUNED],
            failed=self._finished[TrialState.FAIL],
            running=len(self._unfinished) - waiting,
            waiting=waiting,
            replaced=len(self.replaced),
        )

    def _replace(self, trials: list[FrozenTrial], number: int) -> None:
        """Leave trial ``number`` out of the budget: a re-run of it was queued."""
        if number in self.replaced or not 0 <= number < len(trials):
            return
        self.replaced.add(number)
        if number < self._seen and number not in self._unfinished:
            self._finished[trials[number].state] -= 1

    def failure_halt(
        self, trials: list[FrozenTrial], spec: StudySpec, window_start: int
    ) -> str | None:
        """A reason to halt when more than the allowed share of the first trials failed.

        The window is the first ``failure_window`` finished trials, by number, from
        ``window_start`` on, leaving out replaced ones. Once a full window passes it stays
        passed: a re-run only ever takes a failed trial out of the window.
        """
        if self._window_clear_from == window_start:
            return None
        budget = spec.budget
        trials = _in_number_order(trials)
        window: list[FrozenTrial] = []
        for number in range(window_start, len(trials)):
            trial = trials[number]
            if number not in self.replaced and trial.state.is_finished():
                window.append(trial)
                if len(window) == budget.failure_window:
                    break
        failed = [t for t in window if t.state is TrialState.FAIL]
        if len(failed) <= budget.max_failed_share * budget.failure_window:
            if len(window) == budget.failure_window:
                self._window_clear_from = window_start
            return None
        reason = failed[-1].user_attrs.get(FAIL_REASON_ATTR, "no reason recorded")
        return (
            f"halted: {len(failed)} of the first {len(window)} trials failed "
            f"(budget.max_failed_share={budget.max_failed_share:g} of "
            f"budget.failure_window={budget.failure_window}); last reason: {reason}"
        )


def tally(trials: list[FrozenTrial]) -> Tally:
    """Count ``trials`` by state, leaving out failed trials that a re-run replaces."""
    return Ledger().update(trials)


def _in_number_order(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` with trial number i at index i. Storages list a study's trials that way
    already, so this is a check, not a sort, and costs nothing as the study grows."""
    if not trials or (trials[0].number == 0 and trials[-1].number == len(trials) - 1):
        return trials
    return sorted(trials, key=lambda t: t.number)


def next_step(
    study: optuna.Study,
    spec: StudySpec,
    *,
    ledger: Ledger | None = None,
    now: float | None = None,
    taking: bool = True,
) -> tuple[Step, str]:
    """Decide what a worker holding the study lock does next, and why.

    ``ledger`` carries what this process counted at its previous decisions (a worker passes
    the same one every time; without one, every trial is counted afresh). ``taking=False``
    asks without taking a trial (a launcher checking what is left), so the study's timeout
    clock does not start.

    Before deciding, trials of workers that stopped heart-beating are failed and re-queued,
    and a study whose first trials mostly fail is halted for every worker.
    """
    now = time.time() if now is None else now
    ledger = Ledger() if ledger is None else ledger
    reap_stale_trials(study, spec, now=now)
    attrs = study_attrs(study)
    if attrs.get(HALTED_ATTR):
        return Step.DONE, str(attrs[HALTED_ATTR])
    trials = study.get_trials(deepcopy=False)
    counts = ledger.update(trials)
    halt = ledger.failure_halt(trials, spec, int(attrs.get(WINDOW_START_ATTR, 0)))
    if halt is not None:
        set_study_attr(study, HALTED_ATTR, halt)
        return Step.DONE, halt
    started = attrs.get(STARTED_AT_ATTR)
    timeout = spec.budget.timeout
    if timeout is not None and started is not None and now - float(started) >= timeout:
        return Step.DONE, f"timeout of {timeout:g}s reached"
    n_trials = spec.budget.n_trials
    if n_trials is None or counts.finished + counts.running + counts.waiting < n_trials:
        return _run(study, started, now, "budget left", taking)
    if counts.waiting:
        return _run(study, started, now, "re-run queued", taking)
    if counts.running:
        return Step.WAIT, "waiting for running trials"
    return Step.DONE, f"budget of {n_trials} trials spent"


def _run(
    study: optuna.Study, started: object, now: float, why: str, taking: bool
) -> tuple[Step, str]:
    """Decide to run, starting the study's clock with its first trial."""
    if started is None and taking:
        set_study_attr(study, STARTED_AT_ATTR, now)
    return Step.RUN, why


def reap_stale_trials(study: optuna.Study, spec: StudySpec, *, now: float) -> list[int]:
    """Fail the running trials of workers that went silent, and queue their re-runs.

    A worker is silent when its record's heartbeat is older than ``workers.heartbeat_grace``
    or it says it stopped. Silence is counted from the end of the last database outage this
    process saw, if later: nobody could write a heartbeat while the database was down.
    A RUNNING trial that no worker claimed is void (see :func:`void_trial`).
    Returns the numbers of the trials failed here.
    """
    records = load_records(study)
    grace = spec.workers.heartbeat_grace
    reaped = []
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    outage_end = float(getattr(study._storage, "last_outage_end", 0.0))  # after the reads
    for trial in running:
        if WORKER_ATTR not in trial.user_attrs:
            # The study lock is held here, so the worker that took it is not between taking
            # and claiming it: it lost the lock in an outage, or died, before the trial began.
            void_trial(study, trial.number, "taken but never started by a worker")
            reaped.append(trial.number)
            continue
        owner = records.get(str(trial.user_attrs.get(WORKER_ATTR)))
        alive = owner is not None and owner.state is not WorkerState.STOPPED
        if alive and now - max(owner.heartbeat, outage_end) <= grace:
            continue
        silent = "no record" if owner is None else f"no heartbeat for {now - owner.heartbeat:.0f}s"
        who = trial.user_attrs.get(WORKER_ATTR, "unknown worker")
        fail_and_requeue(study, spec, trial, f"worker {who} lost ({silent})")
        if owner is not None and owner.state is not WorkerState.LOST:
            save_record(study, WorkerRecord(**{**owner.__dict__, "state": WorkerState.LOST}))
        reaped.append(trial.number)
    return reaped


def fail_and_requeue(study: optuna.Study, spec: StudySpec, trial: FrozenTrial, reason: str) -> bool:
    """Mark ``trial`` failed with ``reason`` and queue a re-run if retries are left.

    Returns True when a re-run was queued.
    """
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, trial.number)
    storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
    attempt = int(trial.user_attrs.get(ATTEMPT_ATTR, 0))
    if attempt >= spec.budget.max_retries:
        _log.warning("trial %d failed for good after %d re-runs: %s", trial.number, attempt, reason)
        return False
    study.enqueue_trial(
        dict(trial.params),
        user_attrs={RETRY_OF_ATTR: trial.number, ATTEMPT_ATTR: attempt + 1},
    )
    _log.warning("trial %d failed (%s); re-run %d queued", trial.number, reason, attempt + 1)
    return True


def void_trial(study: optuna.Study, number: int, reason: str) -> None:
    """Fail a trial that never ran its objective, and leave it out of the budget.

    Used when the trial was taken in a section whose study lock was lost: another worker may
    have taken the same budget slot meanwhile, so this trial gives it up (the next decision
    under the lock takes it again if it is still free). It is not re-run.
    """
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    storage.set_trial_user_attr(trial_id, VOID_ATTR, True)
    storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, f"void: {reason}")
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
    _log.warning("trial %d void, not counted: %s", number, reason)


def rearm_after_halt(study: optuna.Study) -> None:
    """Let a relaunch try again after a halt: count failures only among trials from now on."""
    if study_attrs(study).get(HALTED_ATTR):
        set_study_attr(study, HALTED_ATTR, None)
        set_study_attr(study, WINDOW_START_ATTR, len(study.get_trials(deepcopy=False)))
