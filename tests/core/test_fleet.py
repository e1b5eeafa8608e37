"""Local workers: how many, pinned where, and stopped and resumed as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from helpers.study import REPO, load_trials, run_tuner, tuner_cmd, write_study
from optuna.trial import TrialState

from tuner.fleet import plan_workers


def test_one_worker_per_gpu_times_per_gpu_each_pinned() -> None:
    slots = plan_workers(per_gpu=2, cpu_workers=3, gpus=["0", "1"], cpu_count=16)
    assert [s.gpu for s in slots] == ["0", "1", "0", "1"]
    assert all(s.threads == 4 for s in slots)


def test_without_gpus_cpu_workers_split_the_threads() -> None:
    slots = plan_workers(per_gpu=2, cpu_workers=3, gpus=[], cpu_count=12)
    assert [s.gpu for s in slots] == [None, None, None]
    assert all(s.threads == 4 for s in slots)


def test_workers_option_overrides_the_file() -> None:
    slots = plan_workers(per_gpu=1, cpu_workers=1, override=5, gpus=["0", "1"], cpu_count=2)
    assert [s.gpu for s in slots] == ["0", "1", "0", "1", "0"]
    assert all(s.threads == 1 for s in slots)


def test_visible_devices_decide_the_gpus(monkeypatch) -> None:
    from tuner.fleet import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_user_objective_example_runs_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "TUNER_HOME": str(tmp_path / "home")}
    example = REPO / "examples" / "quadratic.yaml"
    result = run_tuner("launch", str(example), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    trials = load_trials("quadratic", f"journal://{tmp_path / 'home' / 'journal.log'}")
    assert len(trials) == 20
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert complete and all("shift" in t.params for t in complete), "extra suggest recorded"
    assert any(t.state is TrialState.PRUNED for t in trials), "the median pruner acted"
    assert "best loss (minimize)" in result.stdout


def test_stopped_launcher_resumes_with_the_remaining_budget(
    tmp_path: Path, storage_url: str, study_name: str
) -> None:
    study_file = write_study(
        tmp_path,
        study_name,
        budget={"n_trials": 12},
        workers={"cpu": 2, "stop_grace": 0.2, "heartbeat_interval": 0.5, "heartbeat_grace": 3.0},
        objective={"model": "helpers.objectives:slow", "metric": "loss", "direction": "minimize"},
    )
    env = {
        **os.environ,
        "TUNER_TEST_STEP_SECONDS": "0.2",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)]),
    }
    launcher = subprocess.Popen(
        tuner_cmd("launch", str(study_file), "--storage", storage_url),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [t for t in _trials_or_none(study_name, storage_url) if t.state.is_finished()]
        if len(done) >= 2:
            break
        time.sleep(0.2)
    stopped_at = time.monotonic()
    launcher.send_signal(signal.SIGINT)
    launcher.wait(timeout=15)
    assert time.monotonic() - stopped_at < 10, "launcher and workers exit within 10 s"
    partial = load_trials(study_name, storage_url)
    assert not any(t.state is TrialState.RUNNING for t in partial)
    assert len([t for t in partial if t.state.is_finished()]) < 12
    result = run_tuner("launch", str(study_file), "--storage", storage_url, env=env)
    assert result.returncode == 0, result.stderr
    trials = load_trials(study_name, storage_url)
    retried = {t.user_attrs["tuner:retry_of"] for t in trials if "tuner:retry_of" in t.user_attrs}
    counted = [t for t in trials if t.state.is_finished() and t.number not in retried]
    assert len(counted) == 12
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)


def _trials_or_none(name: str, url: str) -> list:
    try:
        return load_trials(name, url)
    except KeyError:
        return []
