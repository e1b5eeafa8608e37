"""Keep tuner's pruning and fleet figures registered on every study, for optuna-dashboard.

optuna-dashboard draws the plotly figures registered on a study with
:func:`optuna_dashboard.save_plotly_graph_object` on the study's page. tuner registers three,
under fixed ids so each save replaces the last:

* ``tuner-pruning``: the pruning view (only once a trial has reported intermediate values);
* ``tuner-fleet-timeline`` and ``tuner-fleet-status``: the fleet view (only for studies run by
  tuner workers).

A figure is stored as JSON chunks of 2 KB in study system attrs, so it is saved only when its
JSON changed. The digest of what was saved is kept beside it
(``tuner:dashboard:digest:<id>``), so a restarted dashboard, or a second one on the same
storage, does not save an unchanged figure again. With a journal storage every save appends
to the journal file, so there a changed figure is re-saved at most once a minute.

These writes go to the storage directly, not through the dashboard's HTTP API, so they happen
in read-only mode too. A storage that refuses them (a database role allowed only to read, a
read-only replica, a journal file this user may not write) stops the refresher with one
warning; the dashboard then shows the figures as they were last stored, if ever.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import threading
import time

import optuna
import plotly.graph_objects as go
from optuna.storages import BaseStorage
from optuna_dashboard import save_plotly_graph_object

from tuner.report import fleet_status_figure, fleet_timeline_figure, pruning_figure
from tuner.report._data import has_fleet_data

logger = logging.getLogger(__name__)

PRUNING_FIGURE_ID = "tuner-pruning"
FLEET_TIMELINE_FIGURE_ID = "tuner-fleet-timeline"
FLEET_STATUS_FIGURE_ID = "tuner-fleet-status"
DIGEST_ATTR_PREFIX = "tuner:dashboard:digest:"


def study_figures(study: optuna.Study, *, max_curves: int = 200) -> dict[str, go.Figure]:
    """The tuner figures ``study`` has data for, by dashboard figure id."""
    trials = study.get_trials(deepcopy=False)
    figures: dict[str, go.Figure] = {}
    if any(t.intermediate_values for t in trials):
        figures[PRUNING_FIGURE_ID] = pruning_figure(study, trials=trials, max_curves=max_curves)
    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    if has_fleet_data(system_attrs, trials):
        figures[FLEET_TIMELINE_FIGURE_ID] = fleet_timeline_figure(study, trials=trials)
        figures[FLEET_STATUS_FIGURE_ID] = fleet_status_figure(study, trials=trials)
    return figures


def _journal_backed(storage: BaseStorage) -> bool:
    """Whether every save appends to a log that only grows (the embedded default)."""
    inner = getattr(storage, "_backend", None) or storage  # through an in-memory cache layer
    return isinstance(storage, optuna.storages.JournalStorage) or isinstance(
        inner, optuna.storages.JournalStorage
    )


class FigurePublisher:
    """Saves a study's tuner figures when they changed, at most every ``min_resave_s``.

    The first save of a figure is immediate. Later saves of a changed figure wait until
    ``min_resave_s`` passed since the last one; by default 60 s on a journal storage (each
    save appends the whole figure to the journal file) and 0 otherwise (PostgreSQL updates
    the stored rows in place).
    """

    def __init__(
        self, storage: BaseStorage, *, max_curves: int = 200, min_resave_s: float | None = None
    ) -> None:
        self._storage = storage
        self._max_curves = max_curves
        if min_resave_s is None:
            min_resave_s = 60.0 if _journal_backed(storage) else 0.0
        self._min_resave_s = min_resave_s
        self._saved_at: dict[tuple[int, str], float] = {}

    def publish_study(self, study: optuna.Study) -> list[str]:
        """Register or update the tuner figures on ``study``; return the ids written."""
        stored = self._storage.get_study_system_attrs(study._study_id)
        written = []
        now = time.monotonic()
        for figure_id, figure in study_figures(study, max_curves=self._max_curves).items():
            key = DIGEST_ATTR_PREFIX + figure_id
            digest = hashlib.sha256(figure.to_json().encode()).hexdigest()
            if stored.get(key) == digest:
                continue
            last = self._saved_at.get((study._study_id, figure_id))
            if key in stored and last is not None and now - last < self._min_resave_s:
                continue
            save_plotly_graph_object(study, figure, graph_object_id=figure_id)
            self._storage.set_study_system_attr(study._study_id, key, digest)
            self._saved_at[(study._study_id, figure_id)] = now
            written.append(figure_id)
        return written

    def publish_all(self) -> int:
        """Publish the figures of every study in the storage; return how many were written.

        A study that fails (deleted meanwhile, a figure that cannot be drawn) is logged and
        skipped, so one bad study does not hide the figures of the others. A storage that
        refuses writes (see :func:`write_refusal`) refuses them for every study: that error
        is raised.
        """
        written = 0
        for frozen in self._storage.get_all_studies():
            try:
                study = optuna.Study(study_name=frozen.study_name, storage=self._storage)
                written += len(self.publish_study(study))
            except KeyError:
                continue  # deleted since it was listed
            except Exception as exc:  # noqa: BLE001 - the refresher must outlive any one study
                if write_refusal(exc) is not None:
                    raise
                logger.warning("could not publish figures of study %r: %s", frozen.study_name, exc)
                logger.debug("figure publishing failed", exc_info=True)
        return written


def write_refusal(error: BaseException) -> str | None:
    """Why the storage refused a write, when ``error`` (or its cause) says this process may
    not write there; None for any other error.

    Recognised: PostgreSQL's insufficient_privilege (SQLSTATE 42501, a role allowed only to
    read) and read_only_sql_transaction (25006, a replica or ``default_transaction_read_only``),
    SQLite's read-only database, and a file this user may not write (the journal file or its
    lock) or on a read-only file system. The reason is the database's first line, without the
    statement and its parameters.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return str(seen)
        orig = getattr(seen, "orig", None)
        if orig is not None and (
            getattr(orig, "pgcode", None) in ("42501", "25006") or "readonly database" in str(orig)
        ):
            lines = str(orig).strip().splitlines()
            return lines[0] if lines else type(orig).__name__
        seen = seen.__cause__ or seen.__context__
    return None


def publish_study_figures(study: optuna.Study, *, max_curves: int = 200) -> list[str]:
    """Register (or update) the tuner figures on ``study`` now; return the ids written."""
    return FigurePublisher(study._storage, max_curves=max_curves, min_resave_s=0).publish_study(
        study
    )


def publish_all(storage: BaseStorage, *, max_curves: int = 200) -> int:
    """Publish the tuner figures of every study in ``storage`` now; return how many written."""
    return FigurePublisher(storage, max_curves=max_curves, min_resave_s=0).publish_all()


class FigureRefresher:
    """A daemon thread that publishes every study's figures every ``interval_s`` seconds.

    ``passes`` counts completed passes; :meth:`wait_for_first_pass` lets a caller (a test, or
    a command that wants the figures in place before it prints the URL) wait for the first.
    When the storage refuses writes (see :func:`write_refusal`), the thread logs one warning,
    sets :attr:`refused` to the reason and stops: trying again every few seconds would only
    fill the log, and nothing but an administrator's grant changes the answer.
    """

    def __init__(
        self,
        storage: BaseStorage,
        *,
        interval_s: float = 5.0,
        max_curves: int = 200,
        min_resave_s: float | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._publisher = FigurePublisher(storage, max_curves=max_curves, min_resave_s=min_resave_s)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self.passes = 0
        self.refused: str | None = None
        self._thread = threading.Thread(
            target=self._run, name="tuner-dashboard-figures", daemon=True
        )

    def start(self) -> None:
        """Start the thread (a no-op if it is already running)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_for_first_pass(self, timeout: float | None = None) -> bool:
        """Block until the first pass has finished; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.passes >= 1, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                written = self._publisher.publish_all()
                if written:
                    logger.debug("published %d dashboard figures", written)
            except Exception as exc:  # noqa: BLE001 - e.g. the database restarting
                self.refused = write_refusal(exc)
                if self.refused is None:
                    logger.warning("could not publish dashboard figures: %s", exc)
                else:
                    logger.warning(
                        "the storage refuses writes (%s), so tuner's pruning and fleet figures "
                        "are not kept up to date (any stored before are shown as they were); "
                        "start the dashboard with --no-publish to not try",
                        self.refused,
                    )
                    self._stop.set()
            with self._cond:
                self.passes += 1
                self._cond.notify_all()
            self._stop.wait(self._interval_s)
