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
default), so a re-run on another host finds them. Outside a tuner worker both calls do nothing.
"""

from __future__ import annotations

import io
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
    if context is None:
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
    if context is None:
        return None
    import torch

    candidates = [trial.number]
    retry_of = trial.user_attrs.get(RETRY_OF_ATTR)
    if retry_of is not None:
        candidates.append(int(retry_of))
    for number in candidates:
        try:
            with context.artifact_store.open_reader(_key(trial.study.study_name, number)) as f:
                saved = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=False)
        except ArtifactNotFound:
            continue
        return int(saved["step"]), saved["state"]
    return None
