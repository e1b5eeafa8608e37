"""Local workers: how many, pinned where, and stopped and resumed as a user would."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers.study import (
    REPO,
    helper_objective,
    load_trials,
    pg_url,
    run_tuner,
    tuner_cmd,
    tuner_env,
    write_study,
)
from optuna.trial import TrialState
from typer.testing import CliRunner

from tuner.cli import app
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


PROBE = """
import os, pathlib, time, torch

def objective(trial):
    # What a trial sees of the process it runs in, and what ``ps`` shows of it.
    time.sleep(0.3)
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("visible", os.environ.get("CUDA_VISIBLE_DEVICES"))
    trial.set_user_attr("threads", torch.get_num_threads())
    argv = pathlib.Path("/proc/self/cmdline").read_bytes().replace(b"\\0", b" ")
    trial.set_user_attr("command_line", argv.decode())
    return trial.params["x"] ** 2
"""


@pytest.mark.parametrize("visible", ["5,6", ""], ids=["two-gpus", "no-gpu"])
def test_launched_workers_are_pinned_split_and_named_host_pid(
    tmp_path: Path, pg_database: str, study_name: str, visible: str
) -> None:
    # Two GPUs are declared through CUDA_VISIBLE_DEVICES (none need exist: the objective does
    # not touch them), or none; either way the file asks for 2 workers.
    (tmp_path / "probe.py").write_text(PROBE)
    pg_storage = pg_url(pg_database, password="pr0be-secret")  # trust auth ignores it
    study_file = write_study(
        tmp_path,
        study_name,
        budget={"n_trials": 8},
        objective={"model": "probe:objective", "metric": "loss", "direction": "minimize"},
        workers={"per_gpu": 1, "cpu": 2},
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible}
    result = run_tuner("launch", str(study_file), "--storage", pg_storage, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    trials = load_trials(study_name, pg_storage)
    assert len(trials) == 8
    seen = {
        (t.user_attrs["tuner:worker"], t.user_attrs["pid"], t.user_attrs["visible"]) for t in trials
    }
    assert len({worker for worker, _, _ in seen}) == 2, "both workers took trials"
    for worker, pid, _ in seen:
        assert worker == f"{socket.gethostname()}:{pid}", "the worker id is host:pid"
    if visible:
        assert "(GPU 5, GPU 6)" in " ".join(result.stdout.split())
        assert sorted(v for _, _, v in seen) == ["5", "6"], "one worker pinned to each GPU"
        assert all(t.user_attrs["tuner:gpu"] == t.user_attrs["visible"] for t in trials)
    else:
        assert "(CPU, CPU)" in " ".join(result.stdout.split())
    share = max(1, (os.cpu_count() or 1) // 2)
    assert {t.user_attrs["threads"] for t in trials} == {share}, "torch threads split in two"
    assert all(str(study_file) in t.user_attrs["command_line"] for t in trials)
    assert not any("pr0be-secret" in t.user_attrs["command_line"] for t in trials)
    assert "pr0be-secret" not in result.stdout + result.stderr
    assert "postgres:***@" in result.stdout, "the storage is shown, redacted"


def test_progress_status_and_summary_follow_workers_the_launcher_did_not_start(
    tmp_path: Path, pg_storage: str, study_name: str
) -> None:
    study_file = write_study(
        tmp_path,
        study_name,
        budget={"n_trials": 12},
        objective=helper_objective("slow"),
    )
    env = tuner_env(TUNER_TEST_STEP_SECONDS="0.2", COLUMNS="400")  # COLUMNS: nothing wraps
    # A worker started by hand, as on another machine: the launcher knows it only through
    # the storage.
    other = subprocess.Popen(
        tuner_cmd("worker", str(study_file), "--storage", pg_storage),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    launcher = subprocess.Popen(
        tuner_cmd("launch", str(study_file), "--storage", pg_storage, "--workers", "1"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        running = _running_trials_while(launcher, study_file, pg_storage)
        stdout, stderr = launcher.communicate(timeout=120)
        _, err = other.communicate(timeout=60)
    finally:
        launcher.kill()
        other.kill()
    assert launcher.returncode == 0, stderr + stdout
    assert other.returncode == 0, f"a worker exits 0 once the budget is spent:\n{err}"
    # ``tuner status`` during the run: each running trial with the worker running it.
    status, table = running
    for row in status["running"]:
        assert re.fullmatch(rf"{re.escape(socket.gethostname())}:\d+", row["worker"]), row
        assert row["worker"] in table, "the table lists the running trials' workers too"
    assert {row["worker"] for row in status["running"]} <= {w["id"] for w in status["workers"]}
    trials = load_trials(study_name, pg_storage)
    by_other = [t for t in trials if t.user_attrs["tuner:worker"].endswith(f":{other.pid}")]
    assert 0 < len(by_other) < len(trials) == 12, "both the launched and the other worker ran"
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    pruned = sum(t.state is TrialState.PRUNED for t in trials)
    failed = sum(t.state is TrialState.FAIL for t in trials)
    best = min(complete, key=lambda t: t.value)
    bar = re.search(
        r"(\d+)/12 complete (\d+) pruned (\d+) failed (\d+) running (\d+) \| best (\S+)",
        stdout,
    )
    assert bar is not None, stdout
    assert bar.groups() == (
        "12",
        str(len(complete)),
        str(pruned),
        str(failed),
        "0",
        f"{best.value:.4g}",
    )
    summary = stdout[bar.end() :]
    assert f"best loss (minimize) │ {best.value:.6g} (trial {best.number})" in summary
    assert f"x                  │ {best.params['x']:.6g}" in summary
    assert f"{len(complete)} complete, {pruned} pruned, {failed} failed, 0 running" in summary
    assert re.search(r"wall time\s+│ \d+\.\ds", summary)
    assert f"tuner dashboard {study_file} --storage '{pg_storage}'" in summary


def _running_trials_while(
    launcher: subprocess.Popen[str], study_file: Path, url: str
) -> tuple[dict, str]:
    """``tuner status`` as JSON and as a table, once it shows running trials that all name
    their worker (a trial is taken a moment before its worker's name is stored on it)."""
    runner = CliRunner()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and launcher.poll() is None:
        as_json = runner.invoke(
            app, ["status", str(study_file), "--storage", url, "--format", "json"]
        )
        data = json.loads(as_json.output) if as_json.exit_code == 0 else {"running": []}
        if data["running"] and all(row["worker"] for row in data["running"]):
            as_table = runner.invoke(app, ["status", str(study_file), "--storage", url])
            return data, as_table.output
        time.sleep(0.2)
    raise AssertionError("tuner status never showed a running trial")


def test_status_table_shows_a_trial_taken_before_its_worker_is_stored_as_starting() -> None:
    from rich.console import Console

    from tuner.cli._render import workers_table

    rows = [
        {"number": 3, "worker": "host:12", "started": "2026-12-03T10:00:00"},
        {"number": 4, "worker": None, "started": "2026-12-03T10:00:01"},
    ]
    console = Console(width=120, record=True)
    console.print(workers_table({"running": rows}))
    lines = [line for line in console.export_text().splitlines() if "2026-12-03" in line]
    assert "host:12" in lines[0]
    assert "(starting)" in lines[1] and "None" not in lines[1]


def test_summary_wraps_a_long_dashboard_command_instead_of_cutting_it() -> None:
    from rich.console import Console

    from tuner.cli._render import summary_table
    from tuner.fleet import Snapshot, Tally
    from tuner.spec import parse_spec

    spec = parse_spec("name: s\nobjective: {model: 'm:f', metric: loss}\nbudget: {n_trials: 1}\n")
    command = "tuner dashboard studies/s.yaml --storage 'postgresql+psycopg2://" + "u" * 90 + "'"
    snap = Snapshot(Tally(1, 0, 0, 0, 0, 0), 0.5, {"x": 1.0}, 0)
    console = Console(width=80, record=True)
    console.print(summary_table(spec, snap, elapsed=1.0, dashboard_command=command))
    text = console.export_text()
    assert "…" not in text
    # Folded over several lines of the table's right column, but all there.
    column = "".join(line.split("│")[2] for line in text.splitlines() if line.count("│") == 3)
    assert command.replace(" ", "") in column.replace(" ", "")


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
        objective=helper_objective("slow"),
    )
    env = tuner_env(TUNER_TEST_STEP_SECONDS="0.2")
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
