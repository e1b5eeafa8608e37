"""Starting, watching and checking real ``tuner`` processes for the reliability tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import optuna
from helpers.study import tuner_cmd
from optuna.trial import FrozenTrial, TrialState

from tuner.fleet._launch import WORKER_STORAGE_ENV

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
RETRY_OF = "tuner:retry_of"
FAIL_REASON = "tuner:fail_reason"
WORKER = "tuner:worker"


class Proc:
    """A ``tuner`` subprocess whose output goes to a log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        self._handle: IO[bytes] = open(log, "ab")  # noqa: SIM115 - closed in wait()
        self.popen = subprocess.Popen(
            tuner_cmd(*args),
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        os.kill(self.popen.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        finally:
            if self.popen.returncode is not None:
                self._handle.close()

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        self._handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def env_for(url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a ``tuner`` subprocess; ``url`` as a launched worker receives it."""
    env = {**os.environ, **extra}
    if url is not None:
        env[WORKER_STORAGE_ENV] = url
    return env


def start_worker(study_file: Path, url: str, log: Path, **extra: str) -> Proc:
    """``tuner worker`` as ``tuner launch`` starts it (storage URL in the environment)."""
    return Proc(["worker", str(study_file)], log, env_for(url, **extra))


def start_launch(study_file: Path, url: str, log: Path, *more: str, **extra: str) -> Proc:
    return Proc(["launch", str(study_file), "--storage", url, *more], log, env_for(**extra))


def trials(name: str, url: str) -> list[FrozenTrial]:
    """Every trial of the study as stored now (a fresh, uncached read); none before it exists."""
    storage = optuna.storages.RDBStorage(url)
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        storage.engine.dispose()
        return []
    try:
        return storage.get_all_trials(study_id, deepcopy=False)
    finally:
        storage.engine.dispose()


def study_system_attrs(name: str, url: str) -> dict[str, Any]:
    storage = optuna.storages.RDBStorage(url)
    try:
        return storage.get_study_system_attrs(storage.get_study_id_from_name(name))
    finally:
        storage.engine.dispose()


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def replaced(all_trials: list[FrozenTrial]) -> set[int]:
    """Numbers the budget leaves out: failed trials a re-run replaces, void trials."""
    rerun = {int(t.user_attrs[RETRY_OF]) for t in all_trials if RETRY_OF in t.user_attrs}
    return rerun | {t.number for t in all_trials if t.user_attrs.get("tuner:void")}


def counted(all_trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The finished trials the budget counts: complete, pruned, failed and not re-run."""
    gone = replaced(all_trials)
    return [t for t in all_trials if t.state in FINISHED and t.number not in gone]


def assert_exact_budget(all_trials: list[FrozenTrial], n_trials: int) -> None:
    """Exactly ``n_trials`` counted, nothing RUNNING or WAITING, numbers unique and dense."""
    numbers = [t.number for t in all_trials]
    assert len(numbers) == len(set(numbers)), f"duplicate trial numbers: {sorted(numbers)}"
    assert sorted(numbers) == list(range(len(numbers))), f"gaps in numbers: {sorted(numbers)}"
    stuck = [(t.number, t.state.name) for t in all_trials if t.state not in FINISHED]
    assert not stuck, f"trials left unfinished: {stuck}"
    assert len(counted(all_trials)) == n_trials, describe(all_trials)


def describe(all_trials: list[FrozenTrial]) -> str:
    """One line per trial, for assertion messages."""
    return "\n".join(
        f"#{t.number} {t.state.name} value={t.value} "
        f"attrs={ {k: v for k, v in t.user_attrs.items() if k.startswith('tuner:')} }"
        for t in all_trials
    )


def worker_pids(all_trials: list[FrozenTrial]) -> set[int]:
    """The process ids of the workers that took these trials (``tuner:worker`` is host:pid)."""
    return {
        int(str(t.user_attrs[WORKER]).rsplit(":", 1)[1])
        for t in all_trials
        if WORKER in t.user_attrs
    }


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def log_problems(folder: Path) -> list[str]:
    """Lines of the logs in ``folder`` that report an error or a traceback."""
    bad = []
    for log in sorted(folder.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if (
                "Traceback" in line
                or " ERROR " in line
                or " CRITICAL " in line
                or line.startswith("Error")
            ):
                bad.append(f"{log.name}: {line}")
    return bad
