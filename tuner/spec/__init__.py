"""The study file: parsing, validation and the mapping onto Optuna objects."""

from tuner.spec._load import load_spec, parse_spec
from tuner.spec._model import (
    BudgetSpec,
    CsvData,
    ObjectiveSpec,
    ParamSpec,
    ParamType,
    PrunerSpec,
    SamplerSpec,
    StudySpec,
    WorkersSpec,
)
from tuner.spec._optuna import build_pruner, build_sampler
from tuner.spec._space import suggest

__all__ = [
    "BudgetSpec",
    "CsvData",
    "ObjectiveSpec",
    "ParamSpec",
    "ParamType",
    "PrunerSpec",
    "SamplerSpec",
    "StudySpec",
    "WorkersSpec",
    "build_pruner",
    "build_sampler",
    "load_spec",
    "parse_spec",
    "suggest",
]
