"""The journal's log in PostgreSQL: a gapless, totally ordered list of entries in a table.

Two tables in the database named in the URL:

* ``tuner_journal_logs (seq, body)``: one row per journal entry (a JSON operation), ``seq`` =
  0, 1, 2, ... without gaps. ``read_logs(n)`` returns the rows from ``seq = n`` on, in order.
* ``tuner_journal_head (id, last_seq)``: one row holding the last ``seq`` given out. An append
  updates it and inserts its rows in one statement, one transaction; the row lock on the head
  serialises concurrent appends from every process and host until each commits, so the order
  is total and a reader never sees a later entry without the earlier ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from optuna.storages.journal import BaseJournalBackend

from tuner.storage._url import sqlalchemy_url

_log = logging.getLogger(__name__)

# Serialises CREATE TABLE across processes that open a fresh database together.
_SCHEMA_LOCK_KEY = 7243062

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tuner_journal_head ("
    " id INTEGER PRIMARY KEY, last_seq BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tuner_journal_logs ("
    " seq BIGINT PRIMARY KEY, body TEXT NOT NULL,"
    " written_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    "INSERT INTO tuner_journal_head (id, last_seq) VALUES (1, -1) ON CONFLICT (id) DO NOTHING",
)

# One statement, so one round trip and one commit in autocommit mode. The UPDATE takes the
# head row's lock until the commit: appends from all processes are serialised, and each one
# gets the next ``n`` sequence numbers.
_APPEND_SQL = (
    "WITH head AS ("
    " UPDATE tuner_journal_head SET last_seq = last_seq + :n WHERE id = 1 RETURNING last_seq)"
    " INSERT INTO tuner_journal_logs (seq, body)"
    " SELECT head.last_seq - :n + entry.ord, entry.body"
    " FROM head, unnest(CAST(:bodies AS TEXT[])) WITH ORDINALITY AS entry(body, ord)"
)
_READ_SQL = "SELECT seq, body FROM tuner_journal_logs WHERE seq >= :start ORDER BY seq"
_APPEND = sa.text(_APPEND_SQL)
_READ = sa.text(_READ_SQL)
# Both in one round trip, run by the server as one transaction: the SELECT runs while this
# append still holds the head row, so it returns every entry up to and including its own.
_APPEND_AND_READ = sa.text(f"{_APPEND_SQL}; {_READ_SQL}")


class PostgresJournalBackend(BaseJournalBackend):
    """A gapless, totally ordered log of journal entries in PostgreSQL.

    Safe to use from many threads and processes at once. ``append_logs`` is atomic: all of
    its entries get consecutive numbers, or none is written. A lost connection is not
    retried here (the append may have been committed); callers that retry, such as
    :class:`~tuner.storage.ReconnectingStorage`, may write an entry twice, which replaying
    tolerates for every operation except trial creation.

    Args:
        url: a ``postgresql+journal://`` or ``postgresql+psycopg2://`` URL.
        engine_kwargs: passed to :func:`sqlalchemy.create_engine` (pool size, timeouts).
        read_only: create nothing: the tables must exist already (reading them when they do
            not raises SQLAlchemy's ``ProgrammingError`` for an undefined table, which
            :func:`~tuner.storage.open_storage` reports as ``NothingStored``). Lets a database
            role without CREATE read the journal.
    """

    def __init__(
        self, url: str, engine_kwargs: dict[str, Any] | None = None, *, read_only: bool = False
    ) -> None:
        kwargs = {"pool_size": 2, "max_overflow": 2, "pool_recycle": 600, **(engine_kwargs or {})}
        # Autocommit: a read is one round trip, an append one round trip including its commit.
        kwargs["isolation_level"] = "AUTOCOMMIT"
        # A dead pooled connection is replaced when it fails instead of pinged before every
        # use (one more round trip per operation); reads are retried once.
        kwargs["pool_pre_ping"] = False
        self._engine = sa.create_engine(sqlalchemy_url(url), **kwargs)
        if read_only:
            return
        with self._engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
            try:
                for statement in _SCHEMA:
                    connection.execute(sa.text(statement))
            finally:
                connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_LOCK_KEY}
                )

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        for attempt in (1, 2):
            try:
                with self._engine.connect() as connection:
                    rows = connection.execute(_READ, {"start": log_number_from}).all()
                return _decode(rows, log_number_from)
            except sa.exc.DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if logs:
            with self._engine.connect() as connection:
                connection.execute(_APPEND, _append_params(logs))

    def append_and_read(
        self, logs: list[dict[str, Any]], log_number_from: int
    ) -> list[dict[str, Any]]:
        """Append ``logs`` and return the entries from ``log_number_from`` up to and
        including them, in one round trip."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                _APPEND_AND_READ, {**_append_params(logs), "start": log_number_from}
            ).all()
        return _decode(rows, log_number_from)

    def dispose(self) -> None:
        """Close the pooled connections."""
        self._engine.dispose()


def _append_params(logs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"n": len(logs), "bodies": [json.dumps(log) for log in logs]}


def _decode(rows: Sequence[Any], start: int) -> list[dict[str, Any]]:
    """The entries of ``rows`` from ``start`` on, stopping at a gap (which the serialised
    appends rule out; an entry must never be skipped)."""
    logs = []
    for expected, (seq, body) in enumerate(rows, start):
        if seq != expected:
            _log.warning("journal entry %d not readable yet; reading stops before it", expected)
            break
        logs.append(json.loads(body))
    return logs
