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
    publish: Annotated[
        bool,
        typer.Option(
            "--publish/--no-publish",
            help="Keep tuner's pruning and fleet figures up to date in the storage (the "
            "dashboard's only writes; stopped with a warning if the storage refuses them).",
        ),
    ] = True,
) -> None:
    """Serve the browser dashboard (read-only unless --allow-writes).

    Binding to an address other than loopback needs a token in $TUNER_DASHBOARD_TOKEN.
    Without --allow-writes nothing is created in the storage: an empty one is an error.

    Example: tuner dashboard search_spaces/quick.yaml --port 8080
    """
    from tuner.dashboard import TOKEN_ENV, check_bind, serve

    setup_logging(verbose=True)
    spec = read_spec(study_file) if study_file is not None else None
    token = os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)  # an unsafe bind is refused whatever the storage holds
    try:
        with storage_in_force(study_file, spec, storage) as url:
            serve(
                open_storage(url, pool_size=4, read_only=not allow_writes),
                open_artifact_store(url, read_only=not allow_writes),
                host=host,
                port=port,
                allow_writes=allow_writes,
                token=token,
                refresh_seconds=5.0 if publish else None,
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
