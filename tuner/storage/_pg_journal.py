"""Optuna's journal storage on a PostgreSQL table (``postgresql+journal://``).

Why: Optuna's ``RDBStorage`` spends several statements and one synchronous commit on every
write (each ``trial.report`` included) and re-reads trials as the study grows, so its cost per
trial is high and rises with the trial count. A journal is an append-only list of operations
that every process replays into memory; reading only the new entries keeps the cost of each
operation flat.

The journal's entries live in a PostgreSQL table (see ``_pg_log``), appended in one total
order that every process reads the same.

:class:`PostgresJournalStorage` adds one thing to Optuna's ``JournalStorage``: it writes in
batches. A trial's parameters, reports, attributes and final state, and study attributes, are
kept in memory and appended together with the next write that cannot wait (creating a trial,
claiming a queued one), when a study lock of the process is released, and within
``flush_seconds`` in any case. One trial then costs the fleet about two appends instead of
thirty, and appends serialise on the head row through their commit, so that is what bounds
the trials per second of a whole fleet.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Container, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from optuna._typing import JSONSerializable
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial, TrialState

from tuner.storage._open import is_disconnect
from tuner.storage._pg_listing import TrialListing
from tuner.storage._pg_log import PostgresJournalBackend
from tuner.storage._pg_pending import OPEN, applied, brief, database_of

_log = logging.getLogger(__name__)
T = TypeVar("T")


class PostgresJournalStorage(JournalStorage):
    """Optuna's ``JournalStorage`` on :class:`PostgresJournalBackend`, writing in batches.

    Only the writes whose result this process needs at once go to the database at once:
    creating a study or a trial, deleting a study, and claiming a queued trial. Every other
    write (parameters, intermediate values, attributes, a trial's final state, study
    attributes) is kept in order in memory and sent, in one append, with the next immediate
    write, when any :class:`~tuner.storage.StudyLock` of this process is released (see
    :func:`publish_pending`), ``flush_seconds`` after it was made at the latest, and at exit.
    This process reads its own pending writes as if they were stored.

    What other processes see: whatever was written while holding a study lock is visible to
    the next holder; anything else within ``flush_seconds``. A process killed outright loses
    its last ``flush_seconds`` of writes (its running trial is re-run by the fleet anyway).

    Pending writes are checked when made as Optuna checks them on replay (the trial exists
    and is not finished; a parameter's distribution matches the study's), so a mistake still
    raises from the call that made it. A pending write that another process's write has made
    void by the time it is sent (the fleet failed the trial meanwhile) is dropped on replay,
    as Optuna drops another process's conflicting write.

    Args:
        url: the ``postgresql+journal://`` URL.
        engine_kwargs: passed to the backend's SQLAlchemy engine.
        flush_seconds: how long a write may wait; 0 sends every write at once.
        read_only: for a reader: the journal's tables must exist (see
            :class:`PostgresJournalBackend`), and its rare writes (the dashboard's figures)
            are sent at once, so one the database refuses fails the call that made it instead
            of a background flush.
    """

    def __init__(
        self,
        url: str,
        engine_kwargs: dict[str, Any] | None = None,
        *,
        flush_seconds: float = 0.5,
        read_only: bool = False,
    ) -> None:
        self._flush_seconds = 0.0 if read_only else flush_seconds
        self._pending: list[dict[str, Any]] = []
        # Trials with pending writes, as this process sees them (stored state + those writes).
        self._pending_trials: dict[int, FrozenTrial] = {}
        self._pending_studies: dict[int, list[dict[str, Any]]] = {}  # study id -> its entries
        self._fresh: list[dict[str, Any]] | None = None
        self._timer: threading.Timer | None = None
        self._in_outage = self._outage_logged = False
        # Wall-clock time at which the database answered again after failing (read by the
        # fleet's reaper through ReconnectingStorage, like its own).
        self.last_outage_end = 0.0
        self._listing = TrialListing()
        self._locks_held = 0  # study locks of this process held now (see lock_taken)
        self._read_under_lock = False
        self.database = database_of(url)
        super().__init__(PostgresJournalBackend(url, engine_kwargs, read_only=read_only))
        # Replay never raises for an entry written under this id (as for another process's),
        # so a pending write made void meanwhile is dropped instead of failing a later read.
        self._pending_writer = self._worker_id_prefix + "pending"
        OPEN.add(self)

    # --- the two hooks every JournalStorage method goes through ----------------------------

    def _write_log(self, op_code: int, extra_fields: dict[str, Any]) -> None:
        """An immediate write: appended with the pending ones, read back in the same trip."""
        entry = {"op_code": op_code, "worker_id": self._replay_result.worker_id, **extra_fields}
        self._fresh = self._talk(
            self._backend.append_and_read,
            [*self._pending, entry],
            self._replay_result.log_number_read,
        )
        self._drop_pending()

    def _sync_with_backend(self) -> None:
        if self._fresh is not None:  # read together with this call's own write
            logs, self._fresh = self._fresh, None
        elif self._locks_held and self._read_under_lock:
            return  # read once under the lock already (see lock_taken)
        else:
            logs = self._talk(self._backend.read_logs, self._replay_result.log_number_read)
        self._read_under_lock = self._locks_held > 0
        self._replay_result.apply_logs(logs)

    # --- reads while a study lock is held ------------------------------------------------

    def lock_taken(self) -> None:
        """A study lock of this process was just taken (:func:`lock_section`).

        The next read goes to the database and sees everything the previous holder wrote
        under the lock; later reads until :meth:`lock_released` are served from memory. A
        worker's decision under the lock reads the study about eight times, and each read is
        a round trip while every other worker waits for the lock: reading once keeps the
        lock's hold, which bounds the whole fleet's trial rate, short. What other processes
        write meanwhile without the lock (reports, finished trials, heartbeats) is seen at
        the next read after the lock is released; this process's own writes are seen at
        once, as always.
        """
        with self._thread_lock:
            self._locks_held += 1
            self._read_under_lock = False

    def lock_released(self) -> None:
        """The lock taken at the matching :meth:`lock_taken` was released."""
        with self._thread_lock:
            self._locks_held -= 1

    # --- sending the pending writes ------------------------------------------------------------

    def flush(self) -> None:
        """Send the pending writes now."""
        with self._thread_lock:
            if self._pending:
                logs = self._talk(
                    self._backend.append_and_read,
                    self._pending,
                    self._replay_result.log_number_read,
                )
                self._drop_pending()
                self._replay_result.apply_logs(logs)

    def _drop_pending(self) -> None:
        self._pending = []
        self._pending_trials = {}
        self._pending_studies = {}

    def _defer(self, op_code: int, fields: dict[str, Any]) -> None:
        entry = {"op_code": op_code, "worker_id": self._pending_writer, **fields}
        self._pending.append(entry)
        if "trial_id" in fields:
            trial_id = fields["trial_id"]
            seen = self._pending_trials.get(trial_id) or self._replay_result._trials[trial_id]
            self._pending_trials[trial_id] = applied(seen, entry)
        else:
            self._pending_studies.setdefault(fields["study_id"], []).append(entry)
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Timer(self._flush_seconds, self._flush_quietly)
            self._timer.daemon = True
            self._timer.start()

    def _flush_quietly(self) -> None:
        """The timer's flush; on failure the writes stay pending and it tries again later."""
        try:
            self.flush()
        except Exception as exc:
            if not self._outage_logged:
                _log.warning("pending journal writes not sent yet, retrying: %s", brief(exc))
                self._outage_logged = True
            self._timer = threading.Timer(self._flush_seconds, self._flush_quietly)
            self._timer.daemon = True
            self._timer.start()

    def _talk(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on the backend, noting the end of a database outage for the fleet's
        stale-trial reaper (no one could store a heartbeat while the database was down)."""
        try:
            result = call(*args)
        except Exception as exc:
            if is_disconnect(exc):
                self._in_outage = True
            raise
        if self._in_outage:
            self._in_outage = self._outage_logged = False
            self.last_outage_end = time.time()
            _log.info("journal writes sent again after a database outage")
        return result

    # --- writes that wait ----------------------------------------------------------------------

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        if self._flush_seconds <= 0:
            return super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        with self._thread_lock:
            self._writable(trial_id)
            study_id = self._replay_result._trial_id_to_study_id[trial_id]
            for other_id in self._replay_result._study_id_to_trial_ids[study_id]:
                other = self._replay_result._trials[other_id]
                if param_name in other.distributions:
                    check_distribution_compatibility(other.distributions[param_name], distribution)
                    break
            self._defer(
                JournalOperation.SET_TRIAL_PARAM,
                {
                    "trial_id": trial_id,
                    "param_name": param_name,
                    "param_value_internal": param_value_internal,
                    "distribution": distribution_to_json(distribution),
                },
            )
        return None

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        if self._flush_seconds <= 0 or not state.is_finished():
            return super().set_trial_state_values(trial_id, state, values)  # a claim: at once
        with self._thread_lock:
            self._writable(trial_id)
            self._defer(
                JournalOperation.SET_TRIAL_STATE_VALUES,
                {
                    "trial_id": trial_id,
                    "state": state,
                    "values": values,
                    "datetime_complete": datetime.now(tz=timezone.utc).isoformat(
                        timespec="microseconds"
                    ),
                },
            )
        return True

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._defer_trial_write(
            trial_id,
            JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE,
            {"step": step, "intermediate_value": intermediate_value},
        )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._defer_trial_write(
            trial_id, JournalOperation.SET_TRIAL_USER_ATTR, {"user_attr": {key: value}}
        )

    def set_trial_system_attr(self, trial_id: int, key: str, value: JSONSerializable) -> None:
        self._defer_trial_write(
            trial_id, JournalOperation.SET_TRIAL_SYSTEM_ATTR, {"system_attr": {key: value}}
        )

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._defer_study_write(
            study_id, JournalOperation.SET_STUDY_USER_ATTR, {"user_attr": {key: value}}
        )

    def set_study_system_attr(self, study_id: int, key: str, value: JSONSerializable) -> None:
        self._defer_study_write(
            study_id, JournalOperation.SET_STUDY_SYSTEM_ATTR, {"system_attr": {key: value}}
        )

    def _defer_trial_write(self, trial_id: int, op_code: int, fields: dict[str, Any]) -> None:
        if self._flush_seconds <= 0:
            with self._thread_lock:
                self._write_log(op_code, {"trial_id": trial_id, **fields})
                self._sync_with_backend()
            return
        with self._thread_lock:
            self._writable(trial_id)
            self._defer(op_code, {"trial_id": trial_id, **fields})

    def _defer_study_write(self, study_id: int, op_code: int, fields: dict[str, Any]) -> None:
        with self._thread_lock:
            if self._flush_seconds <= 0:
                self._write_log(op_code, {"study_id": study_id, **fields})
                self._sync_with_backend()
                return
            if study_id not in self._replay_result._studies:
                self._sync_with_backend()
                self._replay_result.get_study(study_id)  # KeyError, as Optuna raises
            self._defer(op_code, {"study_id": study_id, **fields})

    def _writable(self, trial_id: int) -> FrozenTrial:
        """The trial as this process sees it; raise as Optuna's replay would if it cannot be
        written (unknown trial, finished trial)."""
        if trial_id not in self._replay_result._trials:
            self._sync_with_backend()
        trial = self._seen(self._replay_result.get_trial(trial_id))
        if trial.state.is_finished():
            raise UpdateFinishedTrialError(
                f"Trial#{trial.number} has already finished and can not be updated."
            )
        return trial

    # --- reads: the stored state with this process's pending writes applied ----------------

    def _seen(self, trial: FrozenTrial) -> FrozenTrial:
        return self._pending_trials.get(trial._trial_id, trial)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._thread_lock:
            self._sync_with_backend()
            return self._seen(self._replay_result.get_trial(trial_id))

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        """As Optuna's, at the cost of the running and new trials plus a list copy (see
        :class:`~tuner.storage._pg_listing.TrialListing`), not a walk over the whole study.
        """
        with self._thread_lock:
            self._sync_with_backend()
            replay = self._replay_result
            if states is not None and not any(s.is_finished() for s in TrialState if s in states):
                trials = [self._seen(t) for t in self._listing.unfinished(replay, study_id)]
            else:
                trials = self._listing.all(replay, study_id)
                for trial_id in self._pending_trials:
                    if replay._trial_id_to_study_id.get(trial_id) == study_id:
                        number = replay._trials[trial_id].number
                        trials[number] = self._seen(trials[number])
            if states is not None:
                trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._study_attrs(study_id, "user_attr")

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._study_attrs(study_id, "system_attr")

    def _study_attrs(self, study_id: int, kind: str) -> dict[str, Any]:
        with self._thread_lock:
            self._sync_with_backend()
            study = self._replay_result.get_study(study_id)
            stored = study.user_attrs if kind == "user_attr" else study.system_attrs
            entries = [e for e in self._pending_studies.get(study_id, ()) if kind in e]
            if not entries:
                return stored
            attrs = dict(stored)
            for entry in entries:
                attrs.update(entry[kind])
            return attrs
