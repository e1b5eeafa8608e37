"""The command line as a user meets it: help, formats, and one clear error for bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest
import yaml
from helpers.study import pg_url, run_tuner, write_study
from typer.testing import CliRunner

from tuner.cli import app

runner = CliRunner()
COMMANDS = ["launch", "worker", "status", "best", "trials", "studies", "dashboard", "report"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_a_working_example(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    example = text.split("Example: ", 1)[1]
    assert f"tuner {command}" in example.split("╭")[0]


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
    params = yaml.safe_load(as_yaml.output)
    best = json.loads(as_json.output)
    assert params == best["params"]
    document = yaml.safe_load(study_file.read_text())
    document["search_space"] = {k: {"choices": [v]} for k, v in params.items()}
    assert yaml.safe_load(yaml.safe_dump(document))["search_space"]["x"]["choices"] == [params["x"]]


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


def test_studies_lists_the_study(finished_study: tuple[Path, str]) -> None:
    study_file, url = finished_study
    result = runner.invoke(app, ["studies", "--storage", url], terminal_width=200)
    assert yaml.safe_load(study_file.read_text())["name"] in result.output


def test_storage_precedence_flag_then_file_then_environment(
    tmp_path: Path, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuner.storage import resolve_url

    monkeypatch.setenv("TUNER_STORAGE", "journal:///env.log")
    assert resolve_url("journal:///flag.log", "journal:///file.log") == "journal:///flag.log"
    assert resolve_url(None, "journal:///file.log") == "journal:///file.log"
    assert resolve_url(None, None) == "journal:///env.log"
    monkeypatch.delenv("TUNER_STORAGE")
    assert resolve_url(None, None).endswith("/home/journal.log")


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


def test_bad_option_is_exit_2(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, "bad-option")
    result = runner.invoke(app, ["launch", str(study_file), "--workers", "0"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["status", str(study_file), "--format", "xml"])
    assert result.exit_code == 2 and "xml" in result.output


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
