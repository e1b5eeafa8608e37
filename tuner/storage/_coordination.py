"""What the fleet needs beside Optuna's storage: a per-study lock and an artifact store.

The lock makes "count the finished trials, then start one more" atomic across every worker
of a study, on any host: a PostgreSQL advisory lock for PostgreSQL, a file lock next to the
file for the embedded default and SQLite. Artifacts (checkpoints, learning curves, weights)
live beside the study: in a PostgreSQL table, or in a folder next to the embedded journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts._protocol import ArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from tuner.storage._url import StorageKind, journal_path, kind_of


class StudyLock:
    """A lock shared by every process working on one study, held with ``with lock.hold():``."""

    def __init__(self, url: str, study_name: str) -> None:
        self._kind = kind_of(url)
        if self._kind is StorageKind.POSTGRESQL:
            digest = hashlib.sha256(f"tuner:{study_name}".encode()).digest()
            self._key = int.from_bytes(digest[:8], "big", signed=True)
            self._engine = sa.create_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=True)
        else:
            self._path = _side_path(url, f".{_safe(study_name)}.lock")

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Block until this process holds the study's lock; release it on exit."""
        if self._kind is StorageKind.POSTGRESQL:
            with self._engine.begin() as connection:
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._key})
                yield
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release the lock's database connection, if any."""
        if self._kind is StorageKind.POSTGRESQL:
            self._engine.dispose()


class PostgresArtifactStore:
    """Optuna's artifact-store protocol on a PostgreSQL table, so every host sees the files."""

    _table = sa.table(
        "tuner_artifacts", sa.column("artifact_id", sa.Text), sa.column("body", sa.LargeBinary)
    )

    def __init__(self, url: str) -> None:
        self._engine = sa.create_engine(url, pool_size=1, max_overflow=1, pool_pre_ping=True)
        with self._engine.begin() as connection:
            # Serialise the CREATE so workers starting together do not collide in pg_type.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(7243061)"))
            connection.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS tuner_artifacts ("
                    " artifact_id TEXT PRIMARY KEY, body BYTEA NOT NULL,"
                    " updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
            )

    def open_reader(self, artifact_id: str) -> BinaryIO:
        with self._engine.connect() as connection:
            body = connection.execute(
                sa.text("SELECT body FROM tuner_artifacts WHERE artifact_id = :id"),
                {"id": artifact_id},
            ).scalar()
        if body is None:
            raise ArtifactNotFound(f"artifact {artifact_id!r} not found")
        return io.BytesIO(bytes(body))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO tuner_artifacts (artifact_id, body) VALUES (:id, :body) "
                    "ON CONFLICT (artifact_id) DO UPDATE SET body = EXCLUDED.body, "
                    "updated_at = now()"
                ),
                {"id": artifact_id, "body": content_body.read()},
            )

    def remove(self, artifact_id: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                sa.text("DELETE FROM tuner_artifacts WHERE artifact_id = :id"), {"id": artifact_id}
            )


def open_artifact_store(url: str) -> ArtifactStore:
    """The artifact store that belongs with the storage at ``url``."""
    if kind_of(url) is StorageKind.POSTGRESQL:
        return PostgresArtifactStore(url)
    folder = _side_path(url, ".artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(folder)


def _side_path(url: str, suffix: str) -> Path:
    """A path next to the file behind a journal or SQLite URL."""
    if kind_of(url) is StorageKind.JOURNAL_FILE:
        base = journal_path(url)
    else:
        database = sa.engine.make_url(url).database or "optuna.db"
        base = Path(database if database != ":memory:" else "optuna.db")
    return base.with_name(base.name + suffix)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
