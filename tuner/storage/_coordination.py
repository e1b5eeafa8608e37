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
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import sqlalchemy as sa
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts._protocol import ArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from tuner.errors import StorageError
from tuner.storage._open import is_disconnect, is_missing_table, retry_on_disconnect
from tuner.storage._url import StorageKind, journal_path, kind_of, sqlalchemy_url

T = TypeVar("T")
_log = logging.getLogger(__name__)


class LockLost(StorageError):
    """The database session holding the study lock ended (an outage) before the lock was left.

    The server released the lock with the session, so another worker may have run the guarded
    section at the same time: whatever the section decided must be checked again.
    """


class StudyLock:
    """A lock shared by every process working on one study, held with ``with lock.hold():``.

    On PostgreSQL the lock lives in a database session: taking it waits out an unreachable
    database for up to ``wait_seconds`` (retrying with backoff up to ``max_backoff`` s apart).
    """

    def __init__(
        self, url: str, study_name: str, *, wait_seconds: float = 0.0, max_backoff: float = 5.0
    ) -> None:
        self._kind = kind_of(url)
        self._url = url
        self._wait = wait_seconds
        self._max_backoff = max_backoff
        if self._kind.on_postgresql:
            digest = hashlib.sha256(f"tuner:{study_name}".encode()).digest()
            self._key = int.from_bytes(digest[:8], "big", signed=True)
            self._engine = sa.create_engine(
                sqlalchemy_url(url), pool_size=1, max_overflow=0, pool_pre_ping=True
            )
        else:
            self._path = _side_path(url, f".{_safe(study_name)}.lock")

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Block until this process holds the study's lock; release it on exit.

        Raises:
            LockLost: on leaving the block, when the lock's database session was lost while
                it was held.
        """
        if self._kind.on_postgresql:
            connection = retry_on_disconnect(
                self._acquire, max_wait=self._wait, what="study lock", max_backoff=self._max_backoff
            )
            with self._section():
                try:
                    yield
                except BaseException:
                    with contextlib.suppress(Exception):  # the error in the block matters
                        connection.close()  # rolls back, which releases the lock
                    raise
                try:
                    self._publish()
                    connection.commit()  # releases the lock
                except sa.exc.DBAPIError as exc:
                    if not is_disconnect(exc):
                        raise
                    raise LockLost("the study lock was lost with its database session") from None
                finally:
                    connection.close()
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def try_hold(self) -> Iterator[bool]:
        """Take the lock only if that needs no waiting: yields whether it is held.

        Yields False, without raising, when another process holds the lock or the database
        cannot be reached; for work that may as well be done next time (reaping).
        """
        if self._kind.on_postgresql:
            try:
                connection = self._engine.connect()
            except sa.exc.DBAPIError:
                yield False
                return
            with connection:
                try:
                    got = connection.execute(
                        sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": self._key}
                    ).scalar()
                except sa.exc.DBAPIError:
                    got = False
                if not got:
                    yield False
                    return
                with self._section():
                    yield True
                    self._publish()
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._path, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _publish(self) -> None:
        """Before the lock is released: send what this process wrote while holding it, so
        the next holder sees it (``postgresql+journal://`` batches writes)."""
        if self._kind is StorageKind.POSTGRESQL_JOURNAL:
            from tuner.storage._pg_pending import publish_pending

            publish_pending(self._url)

    def _section(self) -> contextlib.AbstractContextManager[None]:
        """While the lock is held: ``postgresql+journal://`` reads the study once, not at
        every call (see ``PostgresJournalStorage.lock_taken``)."""
        if self._kind is StorageKind.POSTGRESQL_JOURNAL:
            from tuner.storage._pg_pending import lock_section

            return lock_section(self._url)
        return contextlib.nullcontext()

    def _acquire(self) -> sa.Connection:
        connection = self._engine.connect()
        try:
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._key})
        except BaseException:
            with contextlib.suppress(Exception):
                connection.close()
            raise
        return connection

    def close(self) -> None:
        """Release the lock's database connection, if any (after sending what this process
        still has to write, so a worker's last record is stored before it returns)."""
        if self._kind.on_postgresql:
            try:
                self._publish()
            except Exception as exc:  # closing must not hide the error that led here
                _log.warning("pending writes not sent on closing the study lock: %s", exc)
            self._engine.dispose()


class PostgresArtifactStore:
    """Optuna's artifact-store protocol on a PostgreSQL table, so every host sees the files.

    Each call waits out an unreachable database for up to ``reconnect_seconds``, so a
    checkpoint written during a database restart delays its trial instead of failing it.
    ``read_only`` (for readers such as the dashboard) leaves the table uncreated, so a role
    allowed only to read can open the store; while the table is absent, no artifact is found.
    """

    _table = sa.table(
        "tuner_artifacts", sa.column("artifact_id", sa.Text), sa.column("body", sa.LargeBinary)
    )

    def __init__(
        self,
        url: str,
        reconnect_seconds: float = 0.0,
        max_backoff: float = 5.0,
        *,
        read_only: bool = False,
    ) -> None:
        self._engine = sa.create_engine(
            sqlalchemy_url(url), pool_size=1, max_overflow=1, pool_pre_ping=True
        )
        self._wait = reconnect_seconds
        self._max_backoff = max_backoff
        if not read_only:
            self._retry(self._create_table, "artifact store setup")

    def _retry(self, call: Callable[[], T], what: str) -> T:
        return retry_on_disconnect(
            call, max_wait=self._wait, what=what, max_backoff=self._max_backoff
        )

    def _create_table(self) -> None:
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
        def read() -> Any:
            with self._engine.connect() as connection:
                try:
                    return connection.execute(
                        sa.text("SELECT body FROM tuner_artifacts WHERE artifact_id = :id"),
                        {"id": artifact_id},
                    ).scalar()
                except sa.exc.ProgrammingError as exc:
                    if is_missing_table(exc):  # opened read-only, nothing ever written
                        return None
                    raise

        body = self._retry(read, "artifact read")
        if body is None:
            raise ArtifactNotFound(f"artifact {artifact_id!r} not found")
        return io.BytesIO(bytes(body))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        body = content_body.read()  # read once: a retry must not find the stream spent

        def write() -> None:
            with self._engine.begin() as connection:
                connection.execute(
                    sa.text(
                        "INSERT INTO tuner_artifacts (artifact_id, body) VALUES (:id, :body) "
                        "ON CONFLICT (artifact_id) DO UPDATE SET body = EXCLUDED.body, "
                        "updated_at = now()"
                    ),
                    {"id": artifact_id, "body": body},
                )

        self._retry(write, "artifact write")

    def remove(self, artifact_id: str) -> None:
        def remove() -> None:
            with self._engine.begin() as connection:
                connection.execute(
                    sa.text("DELETE FROM tuner_artifacts WHERE artifact_id = :id"),
                    {"id": artifact_id},
                )

        self._retry(remove, "artifact removal")


def open_artifact_store(
    url: str, reconnect_seconds: float = 0.0, max_backoff: float = 5.0, *, read_only: bool = False
) -> ArtifactStore:
    """The artifact store that belongs with the storage at ``url``.

    ``reconnect_seconds``, ``max_backoff`` and ``read_only``: see
    :class:`PostgresArtifactStore`; read-only, a folder store's missing folder is not created
    either (it then holds no artifact).
    """
    if kind_of(url).on_postgresql:
        return PostgresArtifactStore(url, reconnect_seconds, max_backoff, read_only=read_only)
    folder = _side_path(url, ".artifacts")
    if not read_only:
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
