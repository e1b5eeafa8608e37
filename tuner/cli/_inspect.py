"""``tuner status``, ``best``, ``trials`` and ``studies``: reading a study without changing it."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from optuna.storages import BaseStorage
from rich.console import Console
from rich.table import Table

from tuner.cli._common import StorageOption, StudyFile, load_existing_study, storage_in_force
from tuner.cli._render import (
    best_data,
    best_yaml,
    status_data,
    status_table,
    trials_csv,
    trials_data,
    workers_table,
)
from tuner.storage import open_storage, redact


class StatusFormat(str, Enum):
    table = "table"
    json = "json"


class BestFormat(str, Enum):
    yaml = "yaml"
    json = "json"


class TrialsFormat(str, Enum):
    csv = "csv"
    json = "json"


def status(
    study_file: StudyFile,
    storage: StorageOption = None,
    format: Annotated[StatusFormat, typer.Option("--format", help="Output format.")] = (
        StatusFormat.table
    ),
) -> None:
    """Show trial counts by state, the best value, and the running trials with their workers.

    Example: tuner status search_spaces/quick.yaml --format json
    """
    _, study = load_existing_study(study_file, storage)
    data = status_data(study)
    if format is StatusFormat.json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    console = Console()
    console.print(status_table(data))
    if data["running"]:
        console.print(workers_table(data))


def best(
    study_file: StudyFile,
    storage: StorageOption = None,
    format: Annotated[BestFormat, typer.Option("--format", help="Output format.")] = (
        BestFormat.yaml
    ),
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Also write the best trial's trained weights here."),
    ] = None,
) -> None:
    """Print the best trial's parameters, ready to paste into a study file or a script.

    Example: tuner best search_spaces/quick.yaml --format json
    """
    spec, study = load_existing_study(study_file, storage)
    if weights is not None:
        from tuner.report import export_best_weights
        from tuner.storage import open_artifact_store

        with storage_in_force(study_file, spec, storage) as url:
            store = open_artifact_store(url, read_only=True)
            written = export_best_weights(study, store, weights)
        typer.echo(f"weights written to {written}", err=True)
    if format is BestFormat.json:
        typer.echo(json.dumps({"study": study.study_name, **(best_data(study) or {})}, indent=2))
    else:
        typer.echo(best_yaml(study, spec), nl=False)


def trials(
    study_file: StudyFile,
    storage: StorageOption = None,
    format: Annotated[TrialsFormat, typer.Option("--format", help="Output format.")] = (
        TrialsFormat.csv
    ),
) -> None:
    """Print every trial: number, state, value, params, intermediate values, user attributes.

    Example: tuner trials search_spaces/quick.yaml --format csv > trials.csv
    """
    _, study = load_existing_study(study_file, storage)
    rows = trials_data(study)
    if format is TrialsFormat.json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        typer.echo(trials_csv(rows), nl=False)


def studies(storage: StorageOption = None) -> None:
    """List the studies in a storage with their trial counts and best values.

    Example: tuner studies --storage postgresql+psycopg2://tuner@localhost:5432/tuner
    """
    with storage_in_force(None, None, storage) as url:
        opened = open_storage(url, read_only=True)
        summaries = sorted(opened.get_all_studies(), key=lambda s: s.study_name)
        rows = [
            (
                s.study_name,
                "/".join(d.name.lower() for d in s.directions),
                str(opened.get_n_trials(s._study_id)),
                _best_value(opened, s._study_id, len(s.directions)),
            )
            for s in summaries
        ]
    console = Console()
    # On a line of its own: as a table title it would wrap at the table's width.
    console.print(f"Studies in {redact(url)}", soft_wrap=True, highlight=False)
    table = Table()
    for column in ("name", "direction", "trials", "best"):
        table.add_column(column, justify="right" if column in ("trials", "best") else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _best_value(storage: BaseStorage, study_id: int, objectives: int) -> str:
    """The study's best value as shown in ``tuner studies``; "-" before a trial completes."""
    if objectives != 1:
        return "-"  # a multi-objective study (not tuner's) has no single best value
    try:
        return f"{storage.get_best_trial(study_id).value:.6g}"
    except ValueError:
        return "-"
