"""The HTML report as a file a user attaches to a ticket, and the best weights export."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from dashboard_demo import ARTIFACT_STUDY, populate, weights_bytes
from helpers.study import pg_url, write_study
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import create_trial
from typer.testing import CliRunner

from tuner.cli import app
from tuner.errors import TunerError
from tuner.report import ArtifactError, ReportError, export_best_weights, write_report

SCRIPT_SRC = re.compile(r"<script[^>]*\bsrc\s*=", re.IGNORECASE)


def test_report_is_one_self_contained_file(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="demo <report>", direction="maximize")
    populate(study)
    out = write_report(study, tmp_path / "report.html")
    page = out.read_text(encoding="utf-8")
    assert SCRIPT_SRC.search(page) is None  # plotly.js is inlined, nothing is fetched
    assert "Plotly.newPlot" in page
    for heading in (
        "Optimization history",
        "Intermediate values",
        "Parameter importance",
        "Parallel coordinates",
        "Pruning",
        "Fleet: trials over time",
        "Best trial",
    ):
        assert f"<h2>{heading}</h2>" in page
    assert "Omitted" not in page
    assert "demo &lt;report&gt;" in page  # names are escaped
    assert "compute saved: 54 of 252 epochs (21%)" in page
    assert "test_accuracy (trial 18)" in page and "0.8731" in page
    best = study.best_trial
    assert f"<tr><th>value</th><td>{best.value}</td></tr>" in page
    for name, value in best.params.items():  # the best parameters, one row each
        assert f"<tr><th>{name}</th><td>{value}</td></tr>" in page
    assert out.stat().st_size < 6_000_000
    assert not list(tmp_path.glob(".*.tmp"))


def test_figures_a_study_cannot_support_yet_become_notes(tmp_path: Path) -> None:
    study = optuna.create_study()
    for x in (0.1, 0.5, 0.9):
        study.add_trial(
            create_trial(
                value=x**2,
                params={"x": x},
                distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
            )
        )
    page = write_report(study, tmp_path / "few.html").read_text(encoding="utf-8")
    assert "Omitted: 3 complete trials with parameters; importances need at least 5." in page
    assert "Omitted: no trial reported intermediate values." in page
    # No tuner worker ran it: no fleet tables of "(unknown worker)" rows.
    assert page.count("Omitted: no tuner worker ran this study.") == 2
    assert "unknown worker" not in page
    assert 'id="history"' in page and 'id="parallel"' in page

    empty = write_report(optuna.create_study(), tmp_path / "empty.html").read_text()
    assert "No single best trial: no trial has completed." in empty


def test_report_refuses_a_missing_directory(tmp_path: Path) -> None:
    study = optuna.create_study()
    with pytest.raises(ReportError, match="does not exist"):
        write_report(study, tmp_path / "no" / "such" / "report.html")
    with pytest.raises(ReportError, match="is a directory"):
        write_report(study, tmp_path)
    assert issubclass(ReportError, TunerError)


@pytest.fixture(params=["journal", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> optuna.storages.BaseStorage:
    if request.param == "journal":
        backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log"))
        return optuna.storages.JournalStorage(backend)
    return request.getfixturevalue("pg_storage")


def test_best_weights_are_exported_to_a_file(
    storage: optuna.storages.BaseStorage, tmp_path: Path
) -> None:
    (tmp_path / "artifacts").mkdir()
    store = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    study = optuna.create_study(storage=storage, direction="maximize")
    weights = tmp_path / "weights.pt"
    for value in (0.2, 0.9, 0.5):
        trial = study.ask()
        weights.write_bytes(f"weights of {value}".encode())
        upload_artifact(artifact_store=store, file_path=str(weights), study_or_trial=trial)
        study.tell(trial, value)

    out = export_best_weights(study, store, tmp_path / "best.pt")
    assert out.read_bytes() == b"weights of 0.9"
    out.write_bytes(b"stale")
    assert export_best_weights(study, store, out).read_bytes() == b"weights of 0.9"
    folder = tmp_path / "into"
    folder.mkdir()
    assert export_best_weights(study, store, folder) == folder / "weights.pt"


def test_exporting_weights_the_best_trial_lacks_is_an_error(tmp_path: Path) -> None:
    store = FileSystemArtifactStore(str(tmp_path))
    study = optuna.create_study(study_name="no-weights")
    with pytest.raises(ArtifactError, match="no trial has completed"):
        export_best_weights(study, store, tmp_path / "w.pt")
    study.add_trial(create_trial(value=1.0))
    with pytest.raises(ArtifactError, match=r"trial 0 of study 'no-weights' has no artifact"):
        export_best_weights(study, store, tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists()


def test_tuner_best_writes_the_best_trials_weights(
    artifact_study: optuna.Study, pg_database: str, tmp_path: Path
) -> None:
    """``tuner best --weights`` fetches them from the artifact store the workers upload to."""
    study_file = write_study(tmp_path, ARTIFACT_STUDY)
    out = tmp_path / "best.pt"
    result = CliRunner().invoke(
        app, ["best", str(study_file), "--storage", pg_url(pg_database), "--weights", str(out)]
    )
    assert result.exit_code == 0, result.output
    best = artifact_study.best_trial
    assert out.read_bytes() == weights_bytes(best.number)
    assert f"weights written to {out}" in result.output
    assert f"trial {best.number}" in result.output  # and the parameters, as without --weights
