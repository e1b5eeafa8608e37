"""What the fleet writes into the study so that any process, on any host, can see it.

Each worker keeps one record in the study's system attributes (``tuner:worker:<id>``) with
its state and last heartbeat; each trial it runs carries its worker id in user attributes.
The dashboard's fleet view and the stale-trial reaper both read these.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any

import optuna

WORKER_KEY_PREFIX = "tuner:worker:"
# Trial user attributes.
WORKER_ATTR = "tuner:worker"
GPU_ATTR = "tuner:gpu"
FAIL_REASON_ATTR = "tuner:fail_reason"
RETRY_OF_ATTR = "tuner:retry_of"
ATTEMPT_ATTR = "tuner:attempt"
VOID_ATTR = "tuner:void"  # taken but never run, with another worker maybe in the same slot
# Study system attributes.
STARTED_AT_ATTR = "tuner:started_at"
HALTED_ATTR = "tuner:halted"
WINDOW_START_ATTR = "tuner:failure_window_start"
EPOCHS_ATTR = "tuner:epochs"


class WorkerState(str, Enum):
    """Where a worker is in its life; ``lost`` is set by another worker that saw it go silent."""

    RUNNING = "running"
    IDLE = "idle"
    STOPPED = "stopped"
    LOST = "lost"


@dataclass(frozen=True)
class WorkerRecord:
    """One worker as the study sees it."""

    id: str
    host: str
    pid: int
    gpu: str | None
    state: WorkerState
    heartbeat: float
    started: float
    trial: int | None = None

    @classmethod
    def for_this_process(cls, gpu: str | None) -> WorkerRecord:
        host, pid = socket.gethostname(), os.getpid()
        now = time.time()
        return cls(f"{host}:{pid}", host, pid, gpu, WorkerState.IDLE, now, now)

    def beat(self, **changes: object) -> WorkerRecord:
        """A copy with a fresh heartbeat and the given fields changed."""
        return replace(self, heartbeat=time.time(), **changes)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


def save_record(study: optuna.Study, record: WorkerRecord) -> None:
    """Write ``record`` into the study (replacing this worker's previous one)."""
    study._storage.set_study_system_attr(
        study._study_id, WORKER_KEY_PREFIX + record.id, record.to_json()
    )


def load_records(study: optuna.Study) -> dict[str, WorkerRecord]:
    """Every worker record of the study, by worker id."""
    records = {}
    for key, value in study_attrs(study).items():
        if key.startswith(WORKER_KEY_PREFIX) and isinstance(value, dict):
            records[value["id"]] = WorkerRecord(**{**value, "state": WorkerState(value["state"])})
    return records


def study_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attributes (Optuna 5 reads them through the storage only)."""
    return study._storage.get_study_system_attrs(study._study_id)


def set_study_attr(study: optuna.Study, key: str, value: object) -> None:
    """Set a study system attribute (Optuna 5 keeps this on the storage only)."""
    study._storage.set_study_system_attr(study._study_id, key, value)
