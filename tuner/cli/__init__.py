"""The ``tuner`` command line: a thin layer over the library that shows errors once."""

from __future__ import annotations

import typer

from tuner.cli._common import TunerGroup
from tuner.cli._inspect import best, status, studies, trials
from tuner.cli._run import launch, worker
from tuner.cli._views import dashboard, report

app = typer.Typer(
    cls=TunerGroup,
    help="Hyperparameter search as a service for PyTorch models, on Optuna and PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in (launch, worker, status, best, trials, studies, dashboard, report):
    app.command()(command)


def main() -> None:
    """Entry point of the ``tuner`` script."""
    app()


__all__ = ["app", "main"]
