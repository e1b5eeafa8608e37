"""Which storage a command uses, and how its URL may be shown.

Precedence: ``--storage`` on the command line, then the study file's ``storage:``, then the
``TUNER_STORAGE`` environment variable, then the embedded default under ``storage/data/``,
which needs no server.
"""

from __future__ import annotations

import os
import re
from enum import Enum
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tuner.errors import StorageError

ENV_VAR = "TUNER_STORAGE"
EMBEDDED_DIR_ENV = "TUNER_HOME"
JOURNAL_SCHEME = "journal://"
PG_JOURNAL_SCHEME = "postgresql+journal://"


class StorageKind(Enum):
    """The storage families tuner opens."""

    POSTGRESQL = "postgresql"
    SQLITE = "sqlite"
    JOURNAL_FILE = "journal"
    POSTGRESQL_JOURNAL = "postgresql+journal"  # Optuna's journal in a PostgreSQL table

    @property
    def on_postgresql(self) -> bool:
        """True for both PostgreSQL forms: the study lock and artifacts live in the database."""
        return self in (StorageKind.POSTGRESQL, StorageKind.POSTGRESQL_JOURNAL)


def embedded_dir() -> Path:
    """Where the embedded default keeps its data: ``$TUNER_HOME`` or ``./storage/data``."""
    return Path(os.environ.get(EMBEDDED_DIR_ENV) or Path.cwd() / "storage" / "data").resolve()


def default_url() -> str:
    """The embedded default: an Optuna journal file, safe for several local processes."""
    return f"{JOURNAL_SCHEME}{embedded_dir() / 'journal.log'}"


def resolve_url(cli_url: str | None = None, file_url: str | None = None) -> str:
    """The storage URL in force, by the precedence documented in the module docstring."""
    for candidate in (cli_url, file_url, os.environ.get(ENV_VAR)):
        if candidate:
            kind_of(candidate)
            return candidate
    return default_url()


def kind_of(url: str) -> StorageKind:
    """Classify ``url``; raise :class:`StorageError` listing the accepted forms otherwise."""
    if url.startswith(JOURNAL_SCHEME):
        if not url[len(JOURNAL_SCHEME) :]:
            raise StorageError("storage: journal:// needs a file path, e.g. journal:///tmp/x.log")
        return StorageKind.JOURNAL_FILE
    if url.startswith(PG_JOURNAL_SCHEME):
        return StorageKind.POSTGRESQL_JOURNAL
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        backend = None
    if backend == "postgresql":
        return StorageKind.POSTGRESQL
    if backend == "sqlite":
        return StorageKind.SQLITE
    raise StorageError(
        f"storage: unsupported URL {redact(url)!r}; allowed: "
        "postgresql+psycopg2://user@host:5432/db, postgresql+journal://user@host:5432/db, "
        "journal:///path/file.log, sqlite:///path.db"
    )


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy connects with: ``postgresql+journal://`` uses the psycopg2 driver."""
    if url.startswith(PG_JOURNAL_SCHEME):
        return "postgresql+psycopg2://" + url[len(PG_JOURNAL_SCHEME) :]
    return url


def journal_path(url: str) -> Path:
    """The file behind a ``journal://`` URL."""
    return Path(url[len(JOURNAL_SCHEME) :])


_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>\S*)@", re.I)
# ``?password=...`` in a URL's query (SQLAlchemy hands it to the driver, libpq accepts it) and
# ``password=...`` in a libpq keyword string, quoted or not.
_PASSWORD_PARAMETER = re.compile(
    r"(?P<head>(?<!\w)(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^&\s'\")]*)", re.I
)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    Covers the ``user:password@`` part of a URL and a ``password=`` parameter, in a URL's query
    or in a libpq keyword string, so that a password given either way is never shown.
    Used on everything tuner shows: URLs, error messages, progress output and logs.
    """
    text = _PASSWORD_IN_URL.sub(lambda m: f"{m['head']}***@", text)
    return _PASSWORD_PARAMETER.sub(lambda m: f"{m['head']}***", text)
