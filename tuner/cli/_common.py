"""What every command shares: loading the study file, resolving the storage, showing errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import optuna
import typer
from typer.core import TyperGroup

from tuner.errors import FleetError, TunerError
from tuner.fleet import find_study
from tuner.spec import StudySpec, load_spec
from tuner.storage import open_storage, redact, resolve_url

StudyFile = Annotated[Path, typer.Argument(help="The study file (YAML).", show_default=False)]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Storage URL; overrides the study file and $TUNER_STORAGE. "
        "Default: the embedded journal under ./storage/data.",
        show_default=False,
    ),
]


class TunerGroup(TyperGroup):
    """Shows a :class:`TunerError` as one ``Error: ...`` line: exit 2 for bad input, else 1."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except TunerError as exc:
            if os.environ.get("TUNER_DEBUG"):
                raise
            typer.echo(f"Error: {redact(str(exc))}", err=True)
            raise typer.Exit(1 if isinstance(exc, FleetError) else 2) from None


def read_spec(path: Path) -> StudySpec:
    """Load and validate the study file (schema, sampler, pruner)."""
    return load_spec(path)


def storage_url(spec: StudySpec | None, cli_url: str | None) -> str:
    """The storage in force for this command."""
    return resolve_url(cli_url, spec.storage if spec is not None else None)


def load_existing_study(spec: StudySpec, cli_url: str | None) -> optuna.Study:
    """Open the storage and load the study the file names (it must exist)."""
    return find_study(spec.name, open_storage(storage_url(spec, cli_url)))


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
