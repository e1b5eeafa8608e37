"""Forecasting on one real series: look-back windows, a chronological split, train-only scaling.

The series is cut in time order into train | validation | test (the last ``test_fraction`` is
the test part, the last ``val_fraction`` of the rest validates). A window's inputs are the
``look_back`` values before its first target and its targets are the next ``horizon`` values;
it belongs to the part holding its last target, so no target leaks into an earlier part (its
inputs may come from an earlier part: that is the past, which a forecaster is allowed to see).
The mean and std that scale the series are fitted on the training part only; metrics are
reported on the original scale by undoing that scaling.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from tuner.objectives.data._registry import DatasetInfo
from tuner.objectives.data._types import DataKind, Part, Splits


def read_series(info: DatasetInfo) -> np.ndarray:
    """The target series of a shipped CSV or ``.tsf`` data set, as float64 values."""
    if info.path is None:
        raise ValueError(f"{info.name} has no file")
    if info.path.suffix == ".tsf":
        return _read_tsf_first(info.path)
    return read_csv_column(
        info.path, info.column or "1", headerless=info.path.parent.name == "segmentation"
    )


def read_csv_column(path: Path | str, column: str, headerless: bool = False) -> np.ndarray:
    """One numeric column of a CSV file; blank cells are dropped.

    Raises ``KeyError`` naming the column when it is missing, ``ValueError`` for a non-number.
    """
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if headerless:
        header, body = [str(i) for i in range(len(rows[0]))], rows
    else:
        header, body = rows[0], rows[1:]
    if column not in header:
        raise KeyError(f"column {column!r} not in {header}")
    j = header.index(column)
    return np.array([float(r[j]) for r in body if len(r) > j and r[j].strip()], dtype=np.float64)


def _read_tsf_first(path: Path) -> np.ndarray:
    in_data = False
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not in_data:
                in_data = line.strip().lower() == "@data"
            elif line.strip():
                values = line.strip().rsplit(":", 1)[1].split(",")
                return np.array([float(v) for v in values if v != "?"], dtype=np.float64)
    raise ValueError(f"{path}: no series after @data")


def part_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Steps in the train, validation and test parts of a series of ``n`` steps."""
    n_test = max(1, int(round(n * test_fraction)))
    n_val = max(1, int(round((n - n_test) * val_fraction)))
    return n - n_val - n_test, n_val, n_test


def min_length(look_back: int, horizon: int, val_fraction: float, test_fraction: float) -> int:
    """The shortest series that yields at least two training windows and one window per part."""
    n = look_back + horizon + 1
    while True:
        n_train, _, _ = part_sizes(n, val_fraction, test_fraction)
        if n_train >= look_back + horizon + 1:
            return n
        n += 1


def make_splits(
    name: str,
    series: np.ndarray,
    look_back: int,
    horizon: int,
    val_fraction: float,
    test_fraction: float,
) -> Splits:
    """Window ``series`` into train/val/test parts scaled by the training part's statistics."""
    n = len(series)
    n_train, n_val, _ = part_sizes(n, val_fraction, test_fraction)
    if n_train < look_back + horizon + 1:
        need = min_length(look_back, horizon, val_fraction, test_fraction)
        raise ValueError(
            f"{name}: series of {n} steps is too short for look_back={look_back}, "
            f"horizon={horizon} (needs {need})"
        )
    mean = float(series[:n_train].mean())
    std = float(series[:n_train].std()) or 1.0
    scaled = ((series - mean) / std).astype(np.float32)

    starts = np.arange(look_back, n - horizon + 1)  # index of each window's first target
    x = np.stack([scaled[s - look_back : s] for s in starts])[:, :, None]  # (W, look_back, 1)
    y = np.stack([scaled[s : s + horizon] for s in starts])  # (W, horizon)
    last = starts + horizon - 1
    masks = (last < n_train, (last >= n_train) & (last < n_train + n_val), last >= n_train + n_val)
    parts = [Part(torch.from_numpy(x[m]), torch.from_numpy(y[m])) for m in masks]
    return Splits(
        name=name,
        kind=DataKind.SERIES,
        train=parts[0],
        val=parts[1],
        test=parts[2],
        n_features=1,
        length=look_back,
        n_outputs=horizon,
        target_mean=mean,
        target_std=std,
    )
