"""What the pruning and fleet views show, read out of a study as small value types.

The figures (``_pruning.py``, ``_fleet.py``) only draw these values, so the numbers a user
reads ("compute saved: 412 of 1000 epochs") are computed, and unit-tested, in one place.

The attributes read here are the contract with the core (worker, fleet):

* study system attr ``tuner:epochs``: epochs each trial would train if never pruned;
* study system attrs ``tuner:worker:<host:pid>``: one record per worker process;
* trial user attrs ``tuner:worker``, ``tuner:gpu``, ``tuner:fail_reason``, ``tuner:retry_of``.

Anything missing or malformed is skipped (a plain Optuna study has none of them), never an
error: a dashboard must show what it can.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

logger = logging.getLogger(__name__)

EPOCHS_ATTR = "tuner:epochs"
WORKER_ATTR_PREFIX = "tuner:worker:"
TRIAL_WORKER_ATTR = "tuner:worker"
TRIAL_GPU_ATTR = "tuner:gpu"
FAIL_REASON_ATTR = "tuner:fail_reason"
RETRY_OF_ATTR = "tuner:retry_of"
TEST_SCORE_ATTR = "tuner:test_score"

UNKNOWN_WORKER = "(unknown worker)"
NO_GPU = "cpu"


@dataclass(frozen=True)
class PruningSummary:
    """Epochs trained by finished trials against epochs had none been pruned.

    ``epochs_planned`` is ``None`` while it cannot be known (no ``tuner:epochs`` and no trial
    completed with intermediate values); the saving is then unknown, not zero.
    """

    epochs_planned: int | None
    n_complete: int
    n_pruned: int
    epochs_trained: int
    stop_steps: dict[int, int] = field(default_factory=dict)

    @property
    def epochs_full(self) -> int | None:
        """Epochs the finished trials would have trained had each run to the end."""
        if self.epochs_planned is None:
            return None
        return (self.n_complete + self.n_pruned) * self.epochs_planned

    @property
    def epochs_saved(self) -> int | None:
        full = self.epochs_full
        return None if full is None else max(full - self.epochs_trained, 0)

    @property
    def saved_fraction(self) -> float | None:
        full, saved = self.epochs_full, self.epochs_saved
        if not full or saved is None:
            return None
        return saved / full

    def headline(self) -> str:
        """The saving in one phrase, e.g. ``compute saved: 412 of 1000 epochs (41%)``."""
        if self.epochs_planned is None:
            return "compute saved: unknown until a trial completes"
        fraction = self.saved_fraction or 0.0
        return f"compute saved: {self.epochs_saved} of {self.epochs_full} epochs ({fraction:.0%})"

    def detail(self) -> str:
        """How the saving was counted, e.g. ``12 of 30 finished trials pruned, ...``."""
        finished = self.n_complete + self.n_pruned
        planned = (
            "epochs per trial not known yet"
            if self.epochs_planned is None
            else f"{self.epochs_planned} epochs each if run to the end"
        )
        return (
            f"{self.n_pruned} of {finished} finished trials pruned; "
            f"{self.epochs_trained} epochs trained; {planned}"
        )

    def text(self) -> str:
        """Headline and detail on one line."""
        return f"{self.headline()}: {self.detail()}"


@dataclass(frozen=True)
class WorkerRecord:
    """One worker process as the fleet last recorded it in the study."""

    id: str
    host: str
    pid: int | None
    gpu: str | None
    state: str
    heartbeat: float | None
    started: float | None
    trial: int | None

    def heartbeat_age(self, now: float) -> float | None:
        """Seconds since the last heartbeat, or ``None`` if none was recorded."""
        return None if self.heartbeat is None else max(now - self.heartbeat, 0.0)


@dataclass(frozen=True)
class FailedTrial:
    """A failed trial, why it failed, and the trials that re-ran it."""

    number: int
    worker: str
    gpu: str | None
    reason: str
    retried_by: tuple[int, ...]


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attrs (Optuna 5 no longer exposes them on ``Study``)."""
    return study._storage.get_study_system_attrs(study._study_id)


def last_step(trial: FrozenTrial) -> int | None:
    """The last step a trial reported, i.e. where a pruned trial was stopped."""
    return max(trial.intermediate_values) if trial.intermediate_values else None


def epochs_planned(system_attrs: Mapping[str, Any], trials: Sequence[FrozenTrial]) -> int | None:
    """``tuner:epochs`` if the study records it, else the furthest COMPLETE trial's step + 1."""
    value = system_attrs.get(EPOCHS_ATTR)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value)
    steps = [
        s for t in trials if t.state == TrialState.COMPLETE and (s := last_step(t)) is not None
    ]
    return max(steps) + 1 if steps else None


def pruning_summary(
    system_attrs: Mapping[str, Any], trials: Sequence[FrozenTrial]
) -> PruningSummary:
    """Count the epochs finished trials trained and where pruned trials were stopped.

    A trial trained ``last step + 1`` epochs (capped at the planned epochs); a COMPLETE trial
    that reported nothing is taken to have run to the end. A re-run that resumed from a
    checkpoint reports from where the original stopped, so counting its last step counts the
    pair once. Failed and unfinished trials are left out of both sides.
    """
    planned = epochs_planned(system_attrs, trials)
    n_complete = n_pruned = trained = 0
    stops: Counter[int] = Counter()
    for trial in trials:
        step = last_step(trial)
        if trial.state == TrialState.COMPLETE:
            n_complete += 1
            done = (planned or 0) if step is None else step + 1
        elif trial.state == TrialState.PRUNED:
            n_pruned += 1
            done = 0 if step is None else step + 1
            if step is not None:
                stops[step] += 1
        else:
            continue
        trained += done if planned is None else min(done, planned)
    return PruningSummary(
        epochs_planned=planned,
        n_complete=n_complete,
        n_pruned=n_pruned,
        epochs_trained=trained,
        stop_steps=dict(sorted(stops.items())),
    )


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def worker_records(system_attrs: Mapping[str, Any]) -> list[WorkerRecord]:
    """The fleet's worker records (``tuner:worker:<id>``), sorted by id; malformed ones skipped."""
    records = []
    for key, value in system_attrs.items():
        if not key.startswith(WORKER_ATTR_PREFIX):
            continue
        if not isinstance(value, dict):
            logger.debug("skipping malformed worker record %s", key)
            continue
        worker_id = str(value.get("id") or key[len(WORKER_ATTR_PREFIX) :])
        pid, trial = _number(value.get("pid")), _number(value.get("trial"))
        records.append(
            WorkerRecord(
                id=worker_id,
                host=str(value.get("host") or worker_id.rsplit(":", 1)[0]),
                pid=None if pid is None else int(pid),
                gpu=None if value.get("gpu") is None else str(value["gpu"]),
                state=str(value.get("state") or "unknown"),
                heartbeat=_number(value.get("heartbeat")),
                started=_number(value.get("started")),
                trial=None if trial is None else int(trial),
            )
        )
    return sorted(records, key=lambda r: r.id)


def trial_worker(trial: FrozenTrial) -> str:
    """The worker that ran a trial, or a placeholder for trials run outside the fleet."""
    return str(trial.user_attrs.get(TRIAL_WORKER_ATTR) or UNKNOWN_WORKER)


def gpu_label(worker_id: str, gpu: object) -> str:
    """A GPU named with its host ("node-1 GPU 0"): GPU 0 on two hosts is two GPUs."""
    host = worker_id.rsplit(":", 1)[0] if worker_id != UNKNOWN_WORKER else ""
    device = NO_GPU if gpu is None else f"GPU {gpu}" if str(gpu).isdigit() else str(gpu)
    return f"{host} {device}".strip()


def trial_gpu(trial: FrozenTrial) -> str:
    """The GPU a trial ran on, with its host; ``<host> cpu`` when none was recorded."""
    return gpu_label(trial_worker(trial), trial.user_attrs.get(TRIAL_GPU_ATTR))


def failed_trials(trials: Sequence[FrozenTrial]) -> list[FailedTrial]:
    """Every FAIL trial with its recorded reason and the numbers of its re-runs."""
    retries: dict[int, list[int]] = {}
    for trial in trials:
        original = _number(trial.user_attrs.get(RETRY_OF_ATTR))
        if original is not None:
            retries.setdefault(int(original), []).append(trial.number)
    return [
        FailedTrial(
            number=t.number,
            worker=trial_worker(t),
            gpu=t.user_attrs.get(TRIAL_GPU_ATTR),
            reason=str(t.user_attrs.get(FAIL_REASON_ATTR) or "(no reason recorded)"),
            retried_by=tuple(sorted(retries.get(t.number, []))),
        )
        for t in trials
        if t.state == TrialState.FAIL
    ]


def has_fleet_data(system_attrs: Mapping[str, Any], trials: Sequence[FrozenTrial]) -> bool:
    """Whether the study was run by tuner workers (so a fleet view has something to say)."""
    return any(k.startswith(WORKER_ATTR_PREFIX) for k in system_attrs) or any(
        TRIAL_WORKER_ATTR in t.user_attrs for t in trials
    )


def format_age(seconds: float | None) -> str:
    """A coarse age ("< 1 min", "7 min", "3 h", "2 d").

    Coarse on purpose: the dashboard re-saves a figure only when it changes, and an age in
    seconds would change it on every refresh.
    """
    if seconds is None:
        return "never"
    if seconds < 60:
        return "< 1 min"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def snapshot_time(granularity_s: float = 60.0) -> float:
    """Now, rounded down to ``granularity_s`` so figures drawn "as of now" change rarely."""
    now = time.time()
    return now - now % granularity_s
