"""Data sets of the built-in objectives: lookup by name, and loading into train/val/test parts."""

from __future__ import annotations

from typing import Any

from tuner.objectives.data._registry import (
    DatasetInfo,
    available,
    lookup,
    normalise,
    registry,
    sktime_data_dir,
)
from tuner.objectives.data._types import DataError, DataKind, Part, Splits
from tuner.spec import CsvData

__all__ = [
    "DataError",
    "DataKind",
    "DatasetInfo",
    "Part",
    "Splits",
    "available",
    "load_data",
    "lookup",
    "normalise",
    "registry",
    "sktime_data_dir",
]


def load_data(dataset: str | CsvData, params: dict[str, Any]) -> Splits:
    """Load ``dataset`` with the data settings in ``params`` (val_fraction, look_back, ...).

    ``dataset`` must already have passed :func:`tuner.objectives.check_builtin`.
    """
    from tuner.objectives.data import forecasting

    val_fraction = float(params["val_fraction"])
    if isinstance(dataset, CsvData):
        series = forecasting.read_csv_column(dataset.csv, dataset.target)
        return forecasting.make_splits(
            dataset.csv,
            series,
            int(params["look_back"]),
            int(params["horizon"]),
            val_fraction,
            float(params["test_fraction"]),
        )
    info = lookup(dataset)
    if info is None:
        raise KeyError(dataset)
    if info.kind is DataKind.IMAGE:
        from tuner.objectives.data.images import load_digits_splits

        return load_digits_splits(val_fraction)
    if info.kind is DataKind.SERIES:
        return forecasting.make_splits(
            info.name,
            forecasting.read_series(info),
            int(params["look_back"]),
            int(params["horizon"]),
            val_fraction,
            float(params["test_fraction"]),
        )
    from tuner.objectives.data.ucr import load_ucr

    return load_ucr(info, val_fraction)
