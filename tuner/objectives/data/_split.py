"""The seeded validation split every trial of a study shares."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray | None, n: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(fit, val)`` of a split of ``n`` training samples.

    Stratified by ``labels`` when every class has at least two samples (so each class keeps
    one for fitting), plain random otherwise. The seed is fixed per study so that every trial
    is scored on the same validation samples and trials stay comparable.
    """
    from sklearn.model_selection import train_test_split

    n_val = max(1, int(round(n * val_fraction)))
    index = np.arange(n)
    stratify = None
    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts):
            stratify = labels
    fit, val = train_test_split(index, test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(fit), np.sort(val)
