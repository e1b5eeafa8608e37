"""``tuner status``, ``best``, ``trials`` and ``studies``: reading a study without changing it."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tuner.cli._common import StorageOption, StudyFile, load_existing_study, read_spec
from tuner.cli._render import (
    best_data,
    best_yaml,
    status_data,
    status_table,
    trials_csv,
    trials_data,
    workers_table,
)
from tuner.storage import open_storage, redact, resolve_url


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
    data = status_data(load_existing_study(read_spec(study_file), storage))
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
    spec = read_spec(study_file)
    study = load_existing_study(spec, storage)
    if weights is not None:
        from tuner.report import export_best_weights
        from tuner.storage import open_artifact_store

        url = resolve_url(storage, spec.storage)
        written = export_best_weights(study, open_artifact_store(url), weights)
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
    rows = trials_data(load_existing_study(read_spec(study_file), storage))
    if format is TrialsFormat.json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        typer.echo(trials_csv(rows), nl=False)


def studies(storage: StorageOption = None) -> None:
    """List the studies in a storage with their trial counts and best values.

    Example: tuner studies --storage postgresql+psycopg2://tuner@localhost:5432/tuner
    """
    url = resolve_url(storage)
    opened = open_storage(url)
    summaries = opened.get_all_studies()
    table = Table(title=f"Studies in {redact(url)}", title_justify="left")
    for column in ("name", "direction", "trials"):
        table.add_column(column)
    for s in sorted(summaries, key=lambda s: s.study_name):
        table.add_row(
            s.study_name, s.directions[0].name.lower(), str(opened.get_n_trials(s._study_id))
        )
    Console().print(table)
