"""tuner: hyperparameter search as a service for PyTorch models.

A study file (YAML) names the objective, the data, the search space, the sampler, the pruner
and the budget; a fleet of worker processes runs it as an Optuna study stored in PostgreSQL
(or an embedded default). The public API for user objectives is the checkpoint pair below.
"""

from tuner.checkpoint import load_checkpoint, save_checkpoint
from tuner.errors import FleetError, SpecError, StorageError, TunerError

__version__ = "0.1.0"

__all__ = [
    "FleetError",
    "SpecError",
    "StorageError",
    "TunerError",
    "load_checkpoint",
    "save_checkpoint",
]
