"""Per-epoch checkpoints that let a re-run trial resume where a lost worker stopped.

When a worker dies mid-trial, tuner marks the trial failed and queues a re-run with the same
parameters (user attribute ``tuner:retry_of`` names the original). An objective that calls
:func:`save_checkpoint` after each epoch and :func:`load_checkpoint` at its start resumes the
re-run from the original's last epoch instead of from scratch::

    def objective(trial):
        model = build(trial.params)
        start = 0
        if (saved := tuner.load_checkpoint(trial)) is not None:
            start, state = saved
            model.load_state_dict(state["model"])
        for epoch in range(start, EPOCHS):
            ...
            tuner.save_checkpoint(trial, epoch + 1, {"model": model.state_dict()})

Checkpoints live in the study's artifact store (a table in PostgreSQL, files for the embedded
default), so a re-run on another host finds them. A re-run of a re-run that died before saving
anything still finds the original's checkpoint: :func:`load_checkpoint` follows the chain of
``tuner:retry_of`` back to the latest attempt that saved one. Outside a tuner worker, and for an
``optuna.trial.FixedTrial`` (which belongs to no study), both calls do nothing.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound

from tuner import _context

RETRY_OF_ATTR = "tuner:retry_of"


def _key(study_name: str, trial_number: int) -> str:
    return f"checkpoint-{study_name}-{trial_number}.pt"


def save_checkpoint(trial: optuna.Trial, step: int, state: dict[str, Any]) -> None:
    """Store ``state`` (anything ``torch.save`` takes) as the trial's checkpoint after ``step``.

    Each call replaces the previous checkpoint of this trial.
    """
    context = _context.current()
    if context is None or isinstance(trial, optuna.trial.FixedTrial):
        return
    import torch  # imported here so that the CLI starts without loading torch

    buffer = io.BytesIO()
    torch.save({"step": step, "state": state}, buffer)
    buffer.seek(0)
    context.artifact_store.write(_key(trial.study.study_name, trial.number), buffer)


def load_checkpoint(trial: optuna.Trial) -> tuple[int, dict[str, Any]] | None:
    """The ``(step, state)`` this trial, or the trial it re-runs, last saved; else ``None``.

    ``map_location="cpu"`` keeps the load independent of which GPU the original ran on.
    """
    context = _context.current()
    if context is None or isinstance(trial, optuna.trial.FixedTrial):
        return None
    import torch

    for number in _attempts(trial):
        try:
            with context.artifact_store.open_reader(_key(trial.study.study_name, number)) as f:
                saved = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=False)
        except ArtifactNotFound:
            continue
        return int(saved["step"]), saved["state"]
    return None


def _attempts(trial: optuna.Trial) -> Iterator[int]:
    """This trial's number, then those of the attempts it re-runs, latest first.

    A re-run names only the attempt before it (``tuner:retry_of``); an attempt killed before
    its first checkpoint saved nothing, so the chain is followed back further, read lazily
    (one storage read per step back) and at most ``max_retries``-long in practice.
    """
    yield trial.number
    retry_of = trial.user_attrs.get(RETRY_OF_ATTR)
    seen = {trial.number}
    study_id: int | None = None
    while retry_of is not None and int(retry_of) not in seen:
        number = int(retry_of)
        seen.add(number)
        yield number
        if study_id is None:
            study_id = trial.storage.get_study_id_from_name(trial.study.study_name)
        trial_id = trial.storage.get_trial_id_from_study_id_trial_number(study_id, number)
        retry_of = trial.storage.get_trial_user_attrs(trial_id).get(RETRY_OF_ATTR)
