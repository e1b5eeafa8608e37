"""Trial artifacts a user asks for by name: the best trial's weights, a trial's learning curve.

Built-in objectives upload ``learning_curve.json`` for every trial and ``weights.pt`` for the
best trial with :func:`optuna.artifacts.upload_artifact`; the artifact's metadata lives in the
study storage and its bytes in the artifact store, so both are needed to fetch one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import optuna
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.artifacts._protocol import ArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from tuner.errors import TunerError

logger = logging.getLogger(__name__)

WEIGHTS_ARTIFACT = "weights.pt"
LEARNING_CURVE_ARTIFACT = "learning_curve.json"


class ArtifactError(TunerError):
    """A trial lacks the artifact asked for, the store lost its bytes, or it cannot be written."""


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The study's best trial.

    Raises:
        ArtifactError: no trial completed, or the study has several objectives.
    """
    if len(study.directions) > 1:
        raise ArtifactError(
            f"study {study.study_name!r} has {len(study.directions)} objectives, "
            "so it has no single best trial"
        )
    try:
        return study.best_trial
    except ValueError:
        raise ArtifactError(
            f"study {study.study_name!r} has no best trial: no trial has completed"
        ) from None


def export_trial_artifact(
    study: optuna.Study,
    trial: FrozenTrial,
    artifact_store: ArtifactStore,
    name: str,
    out: str | os.PathLike[str],
) -> Path:
    """Write the artifact ``name`` (its original file name) of ``trial`` to ``out``.

    When the trial uploaded the name more than once, the last upload wins. An existing file
    at ``out`` is replaced.

    Raises:
        ArtifactError: the trial has no artifact of that name, the store lost it, or ``out``
            cannot be written.
    """
    metas = [m for m in get_all_artifact_meta(trial, storage=study._storage) if m.filename == name]
    if not metas:
        raise ArtifactError(
            f"trial {trial.number} of study {study.study_name!r} has no artifact {name!r}"
        )
    path = Path(out)
    if path.is_dir():
        path = path / name
    if not path.parent.is_dir():
        raise ArtifactError(
            f"cannot write {name} to {path}: directory {path.parent} does not exist"
        )
    # Download beside the target, then rename: an existing file is replaced whole, and a
    # failed download leaves nothing half-written.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        download_artifact(
            artifact_store=artifact_store, file_path=str(tmp), artifact_id=metas[-1].artifact_id
        )
        tmp.replace(path)
    except ArtifactNotFound:
        raise ArtifactError(
            f"trial {trial.number} of study {study.study_name!r} records artifact {name!r} "
            f"(id {metas[-1].artifact_id}), but the artifact store does not hold it"
        ) from None
    except OSError as exc:
        raise ArtifactError(f"cannot write {name} to {path}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("wrote %s of trial %d to %s", name, trial.number, path)
    return path


def export_best_weights(
    study: optuna.Study, artifact_store: ArtifactStore, out: str | os.PathLike[str]
) -> Path:
    """Write the best trial's trained weights (artifact ``weights.pt``) to ``out``.

    Args:
        study: a single-objective study.
        artifact_store: the store the objectives uploaded to.
        out: a file path, or an existing directory to write ``weights.pt`` into.

    Returns:
        The path written.

    Raises:
        ArtifactError: no best trial, or it has no ``weights.pt`` artifact.
    """
    return export_trial_artifact(study, best_trial(study), artifact_store, WEIGHTS_ARTIFACT, out)
