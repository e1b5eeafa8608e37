"""What a running trial may need from the worker that runs it, without importing the worker.

The worker sets a :class:`TrialContext` around each objective call; objectives and the
checkpoint API read it. Outside a worker (a plain ``study.optimize``), there is none.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

from optuna.artifacts._protocol import ArtifactStore

from tuner.spec import StudySpec


@dataclass(frozen=True)
class TrialContext:
    """The study file, the artifact store and the identity of the worker running a trial."""

    spec: StudySpec
    artifact_store: ArtifactStore
    worker_id: str
    gpu: str | None = None


_current: contextvars.ContextVar[TrialContext | None] = contextvars.ContextVar(
    "tuner_trial_context", default=None
)


def current() -> TrialContext | None:
    """The context of the trial running in this thread, or ``None`` outside a worker."""
    return _current.get()


@contextlib.contextmanager
def running(context: TrialContext) -> Iterator[TrialContext]:
    """Make ``context`` current for the duration of one objective call."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
