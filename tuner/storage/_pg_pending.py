"""What the journal storage's batched writes need beside the storage itself.

A pending write is applied to this process's view of a trial as Optuna's replay would apply
it (:func:`applied`), and every open storage of the process is registered here so that a
released study lock (:func:`publish_pending`) and the interpreter's exit can send what is
pending.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import weakref
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from optuna.distributions import json_to_distribution
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial, TrialState

from tuner.storage._url import sqlalchemy_url

_log = logging.getLogger(__name__)


class _OpenStorage(Protocol):
    database: str

    def flush(self) -> None: ...

    def lock_taken(self) -> None: ...

    def lock_released(self) -> None: ...


def brief(exc: BaseException) -> str:
    """The first line of the driver's message, without the SQL and its parameters."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def applied(trial: FrozenTrial, entry: dict[str, Any]) -> FrozenTrial:
    """A copy of ``trial`` with one pending write applied, as Optuna's replay applies it."""
    trial = copy.copy(trial)
    op = entry["op_code"]
    if op == JournalOperation.SET_TRIAL_PARAM:
        distribution = json_to_distribution(entry["distribution"])
        name = entry["param_name"]
        value = distribution.to_external_repr(entry["param_value_internal"])
        trial.params = {**trial.params, name: value}
        trial.distributions = {**trial.distributions, name: distribution}
    elif op == JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE:
        trial.intermediate_values = {
            **trial.intermediate_values,
            entry["step"]: entry["intermediate_value"],
        }
    elif op == JournalOperation.SET_TRIAL_USER_ATTR:
        trial.user_attrs = {**trial.user_attrs, **entry["user_attr"]}
    elif op == JournalOperation.SET_TRIAL_SYSTEM_ATTR:
        trial.system_attrs = {**trial.system_attrs, **entry["system_attr"]}
    elif op == JournalOperation.SET_TRIAL_STATE_VALUES:
        trial.state = TrialState(entry["state"])
        if entry["values"] is not None:
            trial.values = entry["values"]
        completed = datetime.fromisoformat(entry["datetime_complete"])
        trial.datetime_complete = completed.astimezone().replace(tzinfo=None)
    return trial


# Every open journal storage of this process, for publish_pending and the exit flush.
OPEN: weakref.WeakSet[_OpenStorage] = weakref.WeakSet()


def publish_pending(url: str | None = None) -> None:
    """Send the pending writes of this process's journal storages on ``url``'s database (of
    all of them when None).

    :class:`~tuner.storage.StudyLock` calls this before it releases the lock, so whatever a
    process wrote while holding it is visible to the next holder. Every storage is tried;
    the first error is raised after.
    """
    error: Exception | None = None
    for storage in _open_on(url):
        try:
            storage.flush()
        except Exception as exc:
            error = error or exc
    if error is not None:
        raise error


@contextlib.contextmanager
def lock_section(url: str) -> Iterator[None]:
    """Tell this process's journal storages on ``url``'s database that a study lock is held
    while the ``with`` block runs.

    :class:`~tuner.storage.StudyLock` enters it right after taking the lock: each storage's
    next read then goes to the database (it must see what the previous holder published),
    and its later reads until the block ends are served from memory (see
    ``PostgresJournalStorage``).
    """
    storages = _open_on(url)
    for storage in storages:
        storage.lock_taken()
    try:
        yield
    finally:
        for storage in storages:
            storage.lock_released()


def _open_on(url: str | None) -> list[_OpenStorage]:
    """This process's open journal storages on ``url``'s database (all of them when None)."""
    database = None if url is None else database_of(url)
    return [s for s in list(OPEN) if database is None or s.database == database]


def database_of(url: str) -> str:
    """Which database ``url`` names, whatever its scheme or driver."""
    parsed = sa.engine.make_url(sqlalchemy_url(url))
    return f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"


@atexit.register
def _flush_at_exit() -> None:
    for storage in _open_on(None):
        try:
            storage.flush()
        except Exception as exc:
            _log.warning("pending journal writes lost at exit: %s", brief(exc))
