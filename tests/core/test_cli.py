"""The command line as a user meets it: help, formats, and one clear error for bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
from pathlib import Path

import optuna
import pytest
import typer.main
import yaml
from helpers.study import REPO, load_trials, pg_url, run_tuner, write_study
from typer.testing import CliRunner

from tuner.cli import app
from tuner.storage import open_storage

runner = CliRunner()
COMMANDS = ["launch", "worker", "status", "best", "trials", "studies", "dashboard", "report"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_a_working_example(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], terminal_width=100)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    example = text.split("Example: ", 1)[1].split("╭")[0].strip()
    assert f"tuner {command} " in example
    # The example as a user pastes it from the repository root: every file it names is
    # there, and the command line parses (each option exists and takes the value shown).
    args = shlex.split(example.split(f"tuner {command} ", 1)[1].split(" > ")[0])
    for arg in args:
        if arg.endswith(".yaml"):
            assert (REPO / arg).is_file(), f"the example names {arg}, which does not exist"
    typer.main.get_command(app).commands[command].make_context(command, args)


@pytest.fixture(scope="module", params=["embedded", "postgresql"])
def finished_study(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """One small finished study per storage, shared by the read-only commands' tests."""
    folder = tmp_path_factory.mktemp("finished")
    if request.param == "embedded":
        url = f"journal://{folder / 'journal.log'}"
    else:
        url = pg_url(request.getfixturevalue("pg_database"))
    study_file = write_study(
        folder,
        f"finished-{request.param}",
        budget={"n_trials": 6},
        pruner={"type": "median", "n_startup_trials": 2},
    )
    env = {**os.environ, "TUNER_HOME": str(folder / "home")}
    result = run_tuner("launch", str(study_file), "--storage", url, env=env)
    assert result.returncode == 0, result.stderr
    return study_file, url


def test_status_json_follows_the_contract(finished_study: tuple[Path, str]) -> None:
    study_file, url = finished_study
    result = runner.invoke(app, ["status", str(study_file), "--storage", url, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data["states"]) == {"COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"}
    assert sum(data["states"].values()) == 6
    assert set(data["best"]) >= {"number", "value", "params"}
    assert set(data["best"]["params"]) == {"x", "y"}
    assert data["name"] == yaml.safe_load(study_file.read_text())["name"]


def test_status_table_shows_counts_and_best(finished_study: tuple[Path, str]) -> None:
    study_file, url = finished_study
    result = runner.invoke(app, ["status", str(study_file), "--storage", url])
    assert result.exit_code == 0
    assert "complete" in result.output and "best" in result.output


def test_best_yaml_pastes_back_into_a_study_file(finished_study: tuple[Path, str]) -> None:
    study_file, url = finished_study
    as_yaml = runner.invoke(app, ["best", str(study_file), "--storage", url])
    as_json = runner.invoke(app, ["best", str(study_file), "--storage", url, "--format", "json"])
    assert as_yaml.exit_code == 0 and as_json.exit_code == 0
    best = json.loads(as_json.output)
    stored = min(
        (t for t in load_trials(best["study"], url) if t.value is not None), key=lambda t: t.value
    )
    assert (best["number"], best["value"], best["params"]) == (
        stored.number,
        stored.value,
        stored.params,
    )
    # Pasted under a study file's objective: (or read by a script), it gives back exactly the
    # best parameters, with the header a comment that says where they came from.
    header, *rest = as_yaml.output.splitlines()
    assert header.startswith(f"# study {best['study']}, trial {best['number']}: loss = ")
    pasted = "objective:\n" + "".join(f"  {line}\n" for line in rest)
    assert yaml.safe_load(pasted)["objective"] == stored.params


def test_trials_csv_and_json_list_every_trial(finished_study: tuple[Path, str]) -> None:
    study_file, url = finished_study
    as_csv = runner.invoke(app, ["trials", str(study_file), "--storage", url])
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [int(r["number"]) for r in rows] == list(range(6))
    assert {"state", "value", "params_x", "params_y", "intermediate_values", "user_attrs"} <= set(
        rows[0]
    )
    as_json = json.loads(
        runner.invoke(app, ["trials", str(study_file), "--storage", url, "--format", "json"]).output
    )
    complete = [t for t in as_json if t["state"] == "COMPLETE"]
    assert complete and complete[0]["intermediate_values"]
    assert all("tuner:worker" in t["user_attrs"] for t in as_json)


def test_studies_lists_each_study_with_trials_and_best_value(
    finished_study: tuple[Path, str],
) -> None:
    study_file, url = finished_study
    name = yaml.safe_load(study_file.read_text())["name"]
    result = runner.invoke(app, ["studies", "--storage", url], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Studies in {url}\n"), "the storage on one line"
    best = min(t.value for t in load_trials(name, url) if t.value is not None)
    (row,) = [line for line in result.output.splitlines() if f" {name} " in line]
    assert [cell.strip() for cell in row.split("│")[1:5]] == [name, "minimize", "6", f"{best:.6g}"]


def _study_with_trials(url: str, name: str, n: int) -> None:
    """Store a study of ``n`` complete trials: each storage below holds a different count."""
    study = optuna.create_study(study_name=name, storage=open_storage(url))
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=n)


def test_storage_precedence_flag_then_file_then_environment_then_default(
    tmp_path: Path, study_name: str
) -> None:
    urls = {
        source: f"journal://{tmp_path / f'{source}.log'}"
        for source in ("flag", "file", "environment")
    }
    urls["default"] = f"journal://{tmp_path / 'home' / 'journal.log'}"  # $TUNER_HOME
    for n, url in enumerate(urls.values(), start=1):
        _study_with_trials(url, study_name, n)
    with_storage = write_study(tmp_path, study_name, storage=urls["file"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    without = write_study(elsewhere, study_name)
    env = {"TUNER_STORAGE": urls["environment"]}
    cases = {
        "flag": ([str(with_storage), "--storage", urls["flag"]], env),
        "file": ([str(with_storage)], env),
        "environment": ([str(without)], env),
        "default": ([str(without)], {"TUNER_STORAGE": ""}),
    }
    for n, (source, (args, environ)) in enumerate(cases.items(), start=1):
        result = runner.invoke(app, ["status", *args, "--format", "json"], env=environ)
        assert result.exit_code == 0, (source, result.output)
        assert json.loads(result.output)["states"]["COMPLETE"] == n, f"not the {source} storage"


def test_a_storage_error_names_where_the_url_came_from(tmp_path: Path) -> None:
    unreachable = "postgresql+psycopg2://someone:hunter2@127.0.0.1:1/tuner"
    in_file = write_study(tmp_path, "from-file", storage=unreachable)
    result = runner.invoke(app, ["status", str(in_file)])
    assert result.exit_code == 2
    assert result.output.startswith(
        f"Error: {in_file}: storage postgresql+psycopg2://someone:***@127.0.0.1:1/tuner: "
    )
    no_storage = write_study(tmp_path, "from-env")
    result = runner.invoke(app, ["launch", str(no_storage)], env={"TUNER_STORAGE": unreachable})
    assert result.exit_code == 2
    assert result.output.startswith("Error: $TUNER_STORAGE: storage postgresql+psycopg2://")
    unsupported = write_study(tmp_path, "unsupported", storage="mysql://someone:hunter2@db/x")
    result = runner.invoke(app, ["trials", str(unsupported)])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {unsupported}: storage: unsupported URL 'mysql://")
    assert "hunter2" not in result.output
    assert not (tmp_path / "home").exists(), "nothing written to the embedded default"


def test_unknown_study_is_one_clear_error(tmp_path: Path, storage_url: str) -> None:
    study_file = write_study(tmp_path, "never-launched")
    result = runner.invoke(app, ["status", str(study_file), "--storage", storage_url])
    assert result.exit_code == 2
    assert result.output.startswith("Error: no study 'never-launched'")


def test_unreachable_database_is_exit_2_without_password(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, "unreachable")
    url = "postgresql+psycopg2://someone:hunter2@127.0.0.1:1/tuner"
    result = run_tuner("launch", str(study_file), "--storage", url)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: storage postgresql+psycopg2://someone:***@")
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


BAD_OPTIONS = [
    (["launch", "{file}", "--workers", "0"], "launch: Invalid value for '--workers': "),
    (["launch", "{file}", "--workers", "1000"], "less than or equal to 256"),
    (["status", "{file}", "--format", "xml"], "'xml' is not one of 'table', 'json'"),
    (["trials", "{file}", "--format", "yaml"], "'yaml' is not one of 'csv', 'json'"),
    (["best", "{file}", "--bogus"], "best: No such option: --bogus"),
    (["report"], "report: Missing argument"),
    (["lanch", "{file}"], "No such command 'lanch'. Did you mean 'launch'?"),
    (["--bogus", "status"], "No such option: --bogus"),
    (  # a storage URL given to the wrong option: the password stays hidden
        ["status", "{file}", "--format", "postgresql://u:hunter2@db/x"],
        "'postgresql://u:***@db/x' is not one of 'table', 'json'",
    ),
]


@pytest.mark.parametrize(
    ("args", "message"), BAD_OPTIONS, ids=[" ".join(a[:3]) for a, _ in BAD_OPTIONS]
)
def test_bad_option_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    study_file = write_study(tmp_path, "bad-option")
    args = [str(study_file) if a == "{file}" else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert message in result.output
    assert "--help')" in result.output, "it says where the allowed options are"
    assert "hunter2" not in result.output
    assert not (tmp_path / "home").exists(), "nothing written to the embedded default"


def test_no_arguments_still_show_the_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage:" in result.output and "launch" in result.output


def test_report_writes_one_self_contained_file(
    finished_study: tuple[Path, str], tmp_path: Path
) -> None:
    study_file, url = finished_study
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(study_file), "--storage", url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "Plotly.newPlot" in html or "plotly" in html.lower()
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?:", html), "nothing remote"


def test_dashboard_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["dashboard", "--storage", f"journal://{tmp_path / 'j.log'}", "--host", "0.0.0.0"],
        env={"TUNER_DASHBOARD_TOKEN": ""},
    )
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and "TUNER_DASHBOARD_TOKEN" in result.output
