"""Built-in objectives: an LSTM and a CNN trained on real data sets, selected by a study file.

``check_builtin`` validates a study file's built-in objective before any trial runs;
``builtin_objective`` returns the callable a worker optimises; ``score_test`` scores the best
trial's saved weights on the test split. See docs/OBJECTIVES.md for every setting.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the submodule that defines it. Loaded on first use, so that commands which
# only read a study (``tuner status``) and the study-file checks of user objectives start
# without importing torch.
_EXPORTS = {
    "CURVE_ATTR": "_builtin",
    "WEIGHTS_ATTR": "_builtin",
    "builtin_objective": "_builtin",
    "score_test": "_builtin",
    "trial_params": "_builtin",
    "MODELS": "_check",
    "check_builtin": "_check",
    "resolve_metric": "_check",
    "METRICS": "_settings",
    "SETTINGS": "_settings",
    "Setting": "_settings",
    "defaults": "_settings",
    "DataError": "data",
    "available_datasets": "data",
    "CNNModel": "models",
    "LSTMModel": "models",
    "build_model": "models",
    "NonFiniteLoss": "train",
    "TrainConfig": "train",
    "fit": "train",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tuner.objectives' has no attribute {name!r}")
    module = importlib.import_module(f"tuner.objectives.{_EXPORTS[name]}")
    value = getattr(module, "available" if name == "available_datasets" else name)
    globals()[name] = value
    return value


__all__ = [
    "CURVE_ATTR",
    "CNNModel",
    "DataError",
    "LSTMModel",
    "METRICS",
    "MODELS",
    "NonFiniteLoss",
    "SETTINGS",
    "Setting",
    "TrainConfig",
    "WEIGHTS_ATTR",
    "available_datasets",
    "build_model",
    "builtin_objective",
    "check_builtin",
    "defaults",
    "fit",
    "resolve_metric",
    "score_test",
    "trial_params",
]
