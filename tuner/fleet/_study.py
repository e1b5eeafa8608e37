"""Creating or joining a study the same way from every process that touches it."""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage

from tuner.errors import SpecError, StorageError
from tuner.fleet._records import EPOCHS_ATTR, set_study_attr, study_attrs
from tuner.spec import StudySpec, build_pruner, build_sampler


def open_study(spec: StudySpec, storage: BaseStorage, seed_offset: int = 0) -> optuna.Study:
    """Create the study named in ``spec``, or join it if it exists; safe to race.

    ``seed_offset`` shifts the sampler's seed (see :func:`tuner.spec.build_sampler`).

    Raises:
        SpecError: the stored study optimises in the other direction.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        direction=spec.direction,
        sampler=build_sampler(spec, seed_offset),
        pruner=build_pruner(spec),
        load_if_exists=True,
    )
    stored = study.direction.name.lower()
    if stored != spec.direction:
        raise SpecError(
            f"objective.direction: study {spec.name!r} already exists and is to {stored}, "
            f"but the file says {spec.direction}; use another name to start afresh"
        )
    if study_attrs(study).get(EPOCHS_ATTR) != spec.objective.epochs:
        set_study_attr(study, EPOCHS_ATTR, spec.objective.epochs)
    return study


def find_study(spec_name: str, storage: BaseStorage) -> optuna.Study:
    """Load an existing study read-only style (no sampler needed).

    Raises:
        StorageError: no study of that name is stored.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [s.study_name for s in storage.get_all_studies()]
    if spec_name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise StorageError(f"no study {spec_name!r} in this storage (studies: {known})")
    return optuna.load_study(study_name=spec_name, storage=storage)
