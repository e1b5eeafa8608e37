"""UCR/UEA archive problems shipped inside sktime, with their standard train/test splits.

Series of unequal length (JapaneseVowels, PLAID) are zero-padded at the end to the longest
series of the problem and keep their true lengths, which the models use to mask the padding
(the LSTM packs, the CNN's global average ignores padded steps). Each channel is standardised
with the mean and std of the training part (validation excluded). Regression problems
(Covid3Month, Tecator) map each series to one standardised number. A classification problem
whose test split has a label its training split lacks is refused with :class:`DataError`.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from tuner.objectives.data._registry import DatasetInfo
from tuner.objectives.data._split import stratified_split
from tuner.objectives.data._types import DataError, DataKind, Part, Splits

log = logging.getLogger(__name__)


def read_ts(info: DatasetInfo, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One split of a ``.ts`` problem as ``(x (N, T, C) float32, lengths (N,), labels (N,))``.

    ``T`` is the longest series over both splits, so train and test share one shape.
    """
    from sktime.datasets import load_from_tsfile

    path = f"{info.path}_{split.upper()}.ts"
    frame, labels = load_from_tsfile(path, return_data_type="nested_univ")
    n, channels = frame.shape
    x = np.zeros((n, info.length, channels), dtype=np.float32)
    lengths = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for c in range(channels):
            values = np.asarray(frame.iat[i, c], dtype=np.float32)[: info.length]
            x[i, : len(values), c] = values
            lengths[i] = max(lengths[i], len(values))
    np.nan_to_num(x, copy=False)  # a few archive problems mark missing values with NaN
    return x, lengths, np.asarray(labels)


def load_ucr(info: DatasetInfo, val_fraction: float, split_seed: int = 0) -> Splits:
    """Load a classification or regression ``.ts`` problem into train/val/test parts.

    Raises:
        DataError: a classification problem's test split has a label its training split lacks.
    """
    x_train, len_train, y_train_raw = read_ts(info, "train")
    x_test, len_test, y_test_raw = read_ts(info, "test")
    regression = info.kind is DataKind.SERIES_REGRESSION
    if regression:
        y_train = y_train_raw.astype(np.float64)
        y_test = y_test_raw.astype(np.float64)
        classes: list[str] = []
    else:
        classes, y_train, y_test = class_indices(info.name, y_train_raw, y_test_raw)
    fit_idx, val_idx = stratified_split(
        y_train if not regression else None, len(y_train), val_fraction, split_seed
    )

    mean, std = _channel_stats(x_train[fit_idx], len_train[fit_idx])
    equal = bool((len_train == info.length).all() and (len_test == info.length).all())

    def part(x: np.ndarray, lengths: np.ndarray, y: np.ndarray) -> Part:
        mask = np.arange(info.length)[None, :, None] < lengths[:, None, None]
        xs = np.where(mask, (x - mean) / std, 0.0).astype(np.float32)
        if regression:
            y_t = torch.tensor(((y - y_mean) / y_std)[:, None], dtype=torch.float32)
        else:
            y_t = torch.tensor(y, dtype=torch.long)
        lens = None if equal else torch.tensor(lengths, dtype=torch.long)
        return Part(torch.from_numpy(xs), y_t, lens)

    y_mean, y_std = 0.0, 1.0
    if regression:
        y_mean = float(y_train[fit_idx].mean())
        y_std = float(y_train[fit_idx].std()) or 1.0
    log.debug(
        "loaded %s: %d train, %d val, %d test", info.name, len(fit_idx), len(val_idx), len(y_test)
    )
    return Splits(
        name=info.name,
        kind=info.kind,
        train=part(x_train[fit_idx], len_train[fit_idx], y_train[fit_idx]),
        val=part(x_train[val_idx], len_train[val_idx], y_train[val_idx]),
        test=part(x_test, len_test, y_test),
        n_features=x_train.shape[2],
        length=info.length,
        n_outputs=1 if regression else len(classes),
        classes=[str(c) for c in classes],
        target_mean=y_mean,
        target_std=y_std,
    )


def class_indices(
    name: str, train_labels: np.ndarray, test_labels: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The classes of ``name`` (the training split's labels, sorted by :func:`_label_key`) and
    both splits' labels as class indices ``(N,)`` int64.

    Raises:
        DataError: a test label never occurs in the training split; the model could not
            predict it, and scoring the test split would fail only at the study's end.
    """
    classes = sorted(set(train_labels.tolist()), key=_label_key)
    unseen = sorted(set(test_labels.tolist()) - set(classes), key=_label_key)
    if unseen:
        raise DataError(
            f"data set {name}: test labels {', '.join(map(repr, unseen))} never occur in the "
            f"training split (its classes: {', '.join(map(repr, classes))})"
        )
    index = {c: i for i, c in enumerate(classes)}
    y_train = np.array([index[c] for c in train_labels], dtype=np.int64)
    y_test = np.array([index[c] for c in test_labels], dtype=np.int64)
    return classes, y_train, y_test


def _channel_stats(x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over the valid (unpadded) steps; shapes ``(1, 1, C)``."""
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
    valid = x[mask]  # (steps, C)
    mean = valid.mean(axis=0, keepdims=True)[None]
    std = valid.std(axis=0, keepdims=True)[None]
    return mean, np.where(std > 1e-8, std, 1.0)


def _label_key(label: str) -> tuple[int, float | str]:
    """Sort numeric labels numerically ("2" before "10"), others alphabetically."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)
