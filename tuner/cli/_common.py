"""What every command shares: loading the study file, resolving the storage, showing errors."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import optuna
import typer
from typer.core import TyperGroup

from tuner.errors import FleetError, StorageError, TunerError
from tuner.fleet import find_study
from tuner.spec import StudySpec, load_spec
from tuner.storage import ENV_VAR, NothingStored, open_storage, redact, resolve_url

try:  # typer 0.2x carries its own copy of click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # older typer runs on click itself
    from click.exceptions import UsageError

    class NoArgsIsHelpError(UsageError):  # type: ignore[no-redef]
        """Never raised by click 8.1, which shows such help through ``ctx.exit()``."""


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
    """Shows every mistake as one ``Error: ...`` line: exit 2 for bad input, else 1.

    A :class:`TunerError` is printed as raised; a bad option or argument, which typer would
    show as a framed usage block, is printed as one line naming the command and the option.
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            _usage_error(exc)
        except TunerError as exc:
            if os.environ.get("TUNER_DEBUG"):
                raise
            typer.echo(f"Error: {redact(str(exc))}", err=True)
            raise typer.Exit(1 if isinstance(exc, FleetError) else 2) from None


def _usage_error(exc: UsageError) -> NoReturn:
    """Print a bad option or argument as one line (exit 2); ``tuner`` alone still shows help."""
    if isinstance(exc, NoArgsIsHelpError):
        raise exc
    # Typer validates option values with pydantic, whose messages start "Value error, ".
    message = exc.format_message().replace("Value error, ", "").rstrip(".")
    if exc.ctx is not None:
        path = exc.ctx.command_path
        message = f"{path}: {message} (see '{path} --help')"
    typer.echo(f"Error: {redact(message)}", err=True)
    raise typer.Exit(exc.exit_code) from None


def read_spec(path: Path) -> StudySpec:
    """Load and validate the study file (schema, sampler, pruner)."""
    return load_spec(path)


@contextmanager
def storage_in_force(
    study_file: Path | None, spec: StudySpec | None, cli_url: str | None
) -> Iterator[str]:
    """Yield the storage URL in force (``--storage``, the file, ``$TUNER_STORAGE``, default).

    A storage error raised inside names where the URL came from when the user did not type
    it: ``study.yaml: storage postgresql+psycopg2://u:***@db/x: cannot connect: ...`` or
    ``$TUNER_STORAGE: ...``; otherwise they would be left to guess what to fix.
    """
    file_url = spec.storage if spec is not None else None
    source = None
    if not cli_url and file_url:
        source = str(study_file)
    elif not cli_url and os.environ.get(ENV_VAR):
        source = f"${ENV_VAR}"
    try:
        yield resolve_url(cli_url, file_url)
    except StorageError as exc:
        if source is None:
            raise
        raise StorageError(f"{source}: {exc}") from None


def load_existing_study(study_file: Path, cli_url: str | None) -> tuple[StudySpec, optuna.Study]:
    """Read the study file and load the study it names (it must exist) from its storage.

    The storage is opened read-only: a command that only reads creates nothing there, and an
    empty storage is one error that names the study looked for and the storage.
    """
    spec = read_spec(study_file)
    with storage_in_force(study_file, spec, cli_url) as url:
        try:
            storage = open_storage(url, read_only=True)
        except NothingStored as exc:
            raise StorageError(f"no study {spec.name!r}: {exc}") from None
        return spec, find_study(spec.name, storage)


class _RedactingFormatter(logging.Formatter):
    """Masks passwords in every log line, whoever logged it (SQLAlchemy and psycopg2 put
    connection strings in their errors), so no caller has to remember to."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr at INFO (workers) or WARNING, with passwords masked."""
    handler = logging.StreamHandler()
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
