"""Opening an Optuna storage (and its artifact store) from a URL.

PostgreSQL and SQLite go through Optuna's ``RDBStorage`` on SQLAlchemy, with connections
checked before use and a pool sized for the caller. The embedded default is Optuna's journal
file, which several local processes can append to without lock errors. ``postgresql+journal://``
keeps Optuna's journal in a PostgreSQL table instead (see ``_pg_journal``). A worker wraps its
storage in :class:`ReconnectingStorage`, so a database restart is waited out, not fatal.

Workers and ``tuner launch`` open a storage to write and create what is missing (the journal
file, the tables). The commands that only read open it with ``read_only=True``: then nothing
is ever created, and a storage that holds nothing yet raises :class:`NothingStored`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from tuner.errors import StorageError
from tuner.storage._url import StorageKind, journal_path, kind_of, redact

_log = logging.getLogger(__name__)


class NothingStored(StorageError):
    """A storage opened to read holds nothing yet: no journal file, or no tables.

    Raised instead of creating them, so that reading never writes; the message names the
    storage with its password masked.
    """

    def __init__(self, url: str) -> None:
        super().__init__(f"storage {redact(url)}: no studies stored there yet")


def open_storage(
    url: str,
    *,
    pool_size: int = 2,
    connect_timeout: float = 5.0,
    wait_seconds: float = 0.0,
    reconnect_seconds: float | None = None,
    max_backoff: float = 5.0,
    read_only: bool = False,
) -> BaseStorage:
    """Open the storage at ``url``.

    Args:
        url: a storage URL (see :func:`tuner.storage.resolve_url`).
        pool_size: connections kept per process (PostgreSQL).
        connect_timeout: seconds one connection attempt may take.
        wait_seconds: keep retrying an unreachable database this long (with backoff) before
            giving up; 0 fails at the first refusal.
        reconnect_seconds: when set, the returned storage retries every call through a
            database outage of up to this many seconds (see :class:`ReconnectingStorage`).
        max_backoff: the longest pause between two retries of a call during an outage.
        read_only: for commands that only read: create nothing (no journal file or folder, no
            tables) and raise :class:`NothingStored` when there is nothing yet. Writes to
            what exists still go through (the dashboard's figures); a database role allowed
            only to read refuses them itself.

    Raises:
        NothingStored: ``read_only`` and the storage holds nothing yet.
        StorageError: the URL is malformed or the database cannot be reached; the message
            never contains the password.
    """
    kind = kind_of(url)
    if kind is StorageKind.JOURNAL_FILE:
        path = journal_path(url)
        if read_only and not path.is_file():
            raise NothingStored(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise StorageError(f"storage {url}: cannot open the journal file: {exc}") from None
    if kind is StorageKind.SQLITE and read_only:
        database = make_url(url).database
        # SQLite creates a missing database file on connecting.
        if not database or database == ":memory:" or not Path(database).is_file():
            raise NothingStored(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if kind is StorageKind.POSTGRESQL_JOURNAL:
        from tuner.storage._pg_journal import PostgresJournalStorage

        journal_kwargs = {
            "pool_size": pool_size,
            "max_overflow": pool_size,
            "connect_args": {
                "connect_timeout": max(1, int(connect_timeout)),
                "application_name": "tuner",
            },
        }
        journal: BaseStorage = _with_backoff(
            lambda: PostgresJournalStorage(url, journal_kwargs, read_only=read_only),
            url,
            wait_seconds,
        )
        if reconnect_seconds:
            return ReconnectingStorage(journal, reconnect_seconds, max_backoff)
        return journal
    if kind is StorageKind.POSTGRESQL:
        engine_kwargs |= {
            "pool_size": pool_size,
            "max_overflow": pool_size,
            "pool_recycle": 600,
            "connect_args": {
                "connect_timeout": max(1, int(connect_timeout)),
                "application_name": "tuner",
            },
        }
    else:
        engine_kwargs["connect_args"] = {"timeout": 60}
    storage = _with_backoff(
        lambda: RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=read_only),
        url,
        wait_seconds,
    )
    # Optuna itself wraps RDBStorage in its trial cache when given a URL; do the same so the
    # sampler's repeated reads of all trials stay incremental.
    cached: BaseStorage = optuna.storages._CachedStorage(storage)
    if reconnect_seconds:
        return ReconnectingStorage(cached, reconnect_seconds, max_backoff)
    return cached


def is_disconnect(error: BaseException) -> bool:
    """True when ``error`` (or its cause) means the database went away, not a bad request."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(
            seen, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)
        ):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _driver_error(error: BaseException) -> BaseException | None:
    """The database driver's own error behind ``error`` (Optuna wraps SQLAlchemy's)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, sa_exc.DBAPIError):
            return seen.orig
        seen = seen.__cause__ or seen.__context__
    return None


def is_missing_table(error: BaseException) -> bool:
    """True when ``error`` says a table does not exist: PostgreSQL's ``undefined_table``
    (SQLSTATE 42P01) or SQLite's "no such table" (which SQLAlchemy calls an OperationalError,
    like a disconnect)."""
    orig = _driver_error(error)
    return orig is not None and (
        getattr(orig, "pgcode", None) == "42P01" or str(orig).startswith("no such table")
    )


# unique_violation (on PostgreSQL's own catalog), duplicate_table, duplicate_object
_CREATED_CONCURRENTLY = {"23505", "42P07", "42710"}


def is_concurrent_creation(error: BaseException) -> bool:
    """True when ``error`` comes from another process creating the same tables at the same
    moment (workers of a fleet starting together on a fresh database); trying again finds
    them there."""
    orig = _driver_error(error)
    return orig is not None and getattr(orig, "pgcode", None) in _CREATED_CONCURRENTLY


def _with_backoff(make: Callable[[], Any], url: str, wait_seconds: float) -> Any:
    """Call ``make`` until it stops failing with a disconnect, for up to ``wait_seconds``.

    A missing table (only a storage opened read-only has any) is :class:`NothingStored`;
    tables that another process is creating at the same moment are simply tried again.
    """
    deadline = time.monotonic() + wait_seconds
    delay = 0.5
    creation_retries = 0
    while True:
        try:
            return make()
        except Exception as exc:  # SQLAlchemy and Optuna both wrap driver errors
            if is_missing_table(exc):
                raise NothingStored(url) from None
            if is_concurrent_creation(exc) and creation_retries < 20:
                creation_retries += 1
                _log.info(
                    "storage %s: another process is creating its tables; retrying", redact(url)
                )
                time.sleep(0.2)
                continue
            if not is_disconnect(exc):
                raise StorageError(f"storage {redact(url)}: {_first_line(exc)}") from None
            if time.monotonic() + delay > deadline:
                raise StorageError(
                    f"storage {redact(url)}: cannot connect: {_first_line(exc)}"
                ) from None
            _log.warning(
                "storage %s not reachable yet (%s); retrying", redact(url), _first_line(exc)
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


T = TypeVar("T")


def retry_on_disconnect(
    call: Callable[[], T],
    *,
    max_wait: float,
    what: str,
    max_backoff: float = 5.0,
    on_recovered: Callable[[], None] | None = None,
) -> T:
    """Return ``call()``, retrying while it fails because the database is unreachable.

    Retries back off exponentially from 0.25 s up to ``max_backoff`` seconds between tries,
    for up to ``max_wait`` seconds in all; then the last error propagates, as does at once any
    error that is not a disconnect. ``on_recovered`` runs when a call succeeds after failing.
    """
    deadline = time.monotonic() + max_wait
    delay = min(0.25, max_backoff)
    failed = False
    while True:
        try:
            result = call()
        except Exception as exc:
            if not is_disconnect(exc) or time.monotonic() + delay > deadline:
                raise
            _log.warning(
                "database unreachable during %s (%s); retrying in %.1fs",
                what,
                _first_line(exc),
                delay,
            )
            failed = True
            time.sleep(delay)
            delay = min(delay * 2, max_backoff)
            continue
        if failed and on_recovered is not None:
            on_recovered()
        return result


def _first_line(exc: BaseException) -> str:
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(getattr(cause, "orig", None) or cause).strip().splitlines()
    return redact(text[0] if text else type(cause).__name__)


class ReconnectingStorage(BaseStorage):
    """A storage that waits out database outages instead of failing the caller.

    Every call that fails because the connection was lost is retried with exponential backoff
    for up to ``max_wait`` seconds; other errors pass through untouched. A call whose commit
    reached the server just before the connection broke could in principle run twice; Optuna's
    writes are idempotent except trial creation, which the fleet's budget check tolerates.
    """

    def __init__(self, inner: BaseStorage, max_wait: float, max_backoff: float = 5.0) -> None:
        self._inner = inner
        self._max_wait = max_wait
        self._max_backoff = max_backoff
        # Wall-clock time at which a call last succeeded after failing on a disconnect. The
        # stale-trial reaper reads it: nobody could write a heartbeat during the outage.
        self._last_outage_end = 0.0

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return retry_on_disconnect(
            lambda: getattr(self._inner, name)(*args, **kwargs),
            max_wait=self._max_wait,
            what=name,
            max_backoff=self._max_backoff,
            on_recovered=self._recovered,
        )

    def _recovered(self) -> None:
        self._last_outage_end = time.time()

    @property
    def last_outage_end(self) -> float:
        """The later of this wrapper's and the inner storage's (a ``postgresql+journal://``
        storage that sends writes in the background notices outages itself)."""
        return max(self._last_outage_end, float(getattr(self._inner, "last_outage_end", 0.0)))

    @last_outage_end.setter
    def last_outage_end(self, value: float) -> None:
        self._last_outage_end = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _forwarder(name: str) -> Callable[..., Any]:
    def method(self: ReconnectingStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = getattr(BaseStorage, name).__doc__
    return method


for _name, _member in vars(BaseStorage).items():
    if callable(_member) and not _name.startswith("_"):
        setattr(ReconnectingStorage, _name, _forwarder(_name))
ReconnectingStorage.__abstractmethods__ = frozenset()
