"""``tuner dashboard`` and ``tuner report``: read-only views of a study."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tuner.cli._common import (
    StorageOption,
    StudyFile,
    load_existing_study,
    read_spec,
    setup_logging,
    storage_in_force,
)
from tuner.storage import open_artifact_store, open_storage


def dashboard(
    study_file: Annotated[
        Path | None, typer.Argument(help="A study file, to take its storage.", show_default=False)
    ] = None,
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 8080,
    allow_writes: Annotated[
        bool, typer.Option("--allow-writes", help="Let the browser delete studies and edit trials.")
    ] = False,
) -> None:
    """Serve the browser dashboard (read-only unless --allow-writes).

    Binding to an address other than loopback needs a token in $TUNER_DASHBOARD_TOKEN.

    Example: tuner dashboard search_spaces/quick.yaml --port 8080
    """
    from tuner.dashboard import TOKEN_ENV, serve

    setup_logging(verbose=True)
    spec = read_spec(study_file) if study_file is not None else None
    try:
        with storage_in_force(study_file, spec, storage) as url:
            serve(
                open_storage(url, pool_size=4),
                open_artifact_store(url),
                host=host,
                port=port,
                allow_writes=allow_writes,
                token=os.environ.get(TOKEN_ENV) or None,
            )
    except KeyboardInterrupt:
        typer.echo("dashboard stopped", err=True)


def report(
    study_file: StudyFile,
    storage: StorageOption = None,
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path(
        "report.html"
    ),
) -> None:
    """Write one self-contained HTML report (opens offline, attaches to a ticket or paper).

    Example: tuner report search_spaces/quick.yaml --out report.html
    """
    from tuner.report import write_report

    _, study = load_existing_study(study_file, storage)
    written = write_report(study, out)
    typer.echo(f"report written to {written}")
