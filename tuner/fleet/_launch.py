"""Where trials run on this machine: planning, starting, watching and stopping worker processes.

Each worker is a separate ``tuner worker`` process pinned to one GPU with
``CUDA_VISIBLE_DEVICES`` (or, without GPUs, given its share of the CPU threads). The storage
URL travels in the environment, never on the command line, so ``ps`` does not show passwords.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tuner.fleet._budget import Step, Tally, next_step, rearm_after_halt, tally
from tuner.fleet._study import open_study
from tuner.spec import StudySpec
from tuner.storage import StudyLock, embedded_dir, open_storage

# The URL a launched worker must use, standing in for ``tuner worker --storage``.
WORKER_STORAGE_ENV = "TUNER_WORKER_STORAGE"
WORKER_GPU_ENV = "TUNER_WORKER_GPU"


@dataclass(frozen=True)
class Snapshot:
    """The study's progress as a launcher shows it."""

    tally: Tally
    best_value: float | None
    best_params: dict[str, object]
    best_number: int | None


def prepare_launch(spec: StudySpec, storage_url: str) -> tuple[optuna.Study, Step, str]:
    """Create or resume the study and say whether anything is left to run.

    A relaunch after a halt (too many failed trials) clears the halt, so a fixed objective
    gets a fresh window of trials; stale trials of a previous fleet are re-queued here.

    Raises:
        StorageError: the storage is unreachable (checked once, without waiting).
    """
    study = open_study(spec, open_storage(storage_url))
    lock = StudyLock(storage_url, spec.name)
    try:
        with lock.hold():
            rearm_after_halt(study)
            step, why = next_step(study, spec, taking=False)
    finally:
        lock.close()
    return study, step, why


def snapshot(study: optuna.Study) -> Snapshot:
    """Read the study's current counts and best trial from the storage."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    best = None
    if done:
        pick = max if study.direction.name == "MAXIMIZE" else min
        best = pick(done, key=lambda t: t.value)
    return Snapshot(
        tally(trials),
        best.value if best else None,
        dict(best.params) if best else {},
        best.number if best else None,
    )


@dataclass(frozen=True)
class WorkerSlot:
    """One local worker process: its index, its GPU (None on CPU) and its CPU threads."""

    index: int
    gpu: str | None
    threads: int


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES``, else what nvidia-smi lists."""
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [g.strip() for g in declared.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def plan_workers(
    per_gpu: int,
    cpu_workers: int,
    *,
    override: int | None = None,
    gpus: list[str] | None = None,
    cpu_count: int | None = None,
) -> list[WorkerSlot]:
    """Decide the local workers: ``per_gpu`` per visible GPU, else ``cpu_workers``.

    ``override`` (``--workers N``) fixes the count; GPUs are then assigned round-robin.
    CPU threads are split evenly so that workers do not oversubscribe the cores.
    """
    gpus = visible_gpus() if gpus is None else gpus
    cores = cpu_count or os.cpu_count() or 1
    count = override or (len(gpus) * per_gpu if gpus else cpu_workers)
    threads = max(1, cores // count)
    return [WorkerSlot(i, gpus[i % len(gpus)] if gpus else None, threads) for i in range(count)]


class LocalFleet:
    """The worker processes that ``tuner launch`` runs on this machine."""

    def __init__(
        self, study_file: Path, storage_url: str, slots: list[WorkerSlot], study_name: str
    ) -> None:
        self._study_file = study_file
        self._storage_url = storage_url
        self._slots = slots
        self.log_dir = embedded_dir() / "logs" / study_name
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Start one process per slot; their output goes to ``log_dir/worker-<i>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for slot in self._slots:
            env = dict(os.environ)
            env[WORKER_STORAGE_ENV] = self._storage_url
            env["OMP_NUM_THREADS"] = str(slot.threads)
            env["MKL_NUM_THREADS"] = str(slot.threads)
            env["PYTHONUNBUFFERED"] = "1"
            if slot.gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = slot.gpu
                env[WORKER_GPU_ENV] = slot.gpu
            log = open(self.log_dir / f"worker-{slot.index}.log", "ab")  # noqa: SIM115
            with log:
                self._processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tuner", "worker", str(self._study_file)],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    def running(self) -> int:
        """How many worker processes are still alive."""
        return sum(p.poll() is None for p in self._processes)

    def exit_codes(self) -> list[int | None]:
        return [p.poll() for p in self._processes]

    def stop(self, timeout: float = 10.0) -> None:
        """Ask every worker to stop (SIGTERM), and kill those still alive after ``timeout``."""
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self._processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
