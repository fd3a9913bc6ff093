"""Crossed (pigeonhole) bootstrap of means over sequences x feature draws, for many units at once.

A measured error of a head is a mean over a grid of sequences (text windows or images) and feature draws
(seeds). Both are random factors the claim generalises over, and they are crossed: the feature draw of seed s
is the same W for every sequence (and for every head of a model that shares the head size). Resampling
sequences and seeds independently, with the same indices for every unit (head), keeps both sources of
spread and the correlation between heads (Owen 2007, "The pigeonhole bootstrap", Ann. Appl. Stat. 1: 386).

:func:`crossed_bootstrap` returns, per unit, the mean, its percentile CI and one-sided bootstrap p-values
against a threshold (the share of resampled means on the other side, as (k + 1) / (B + 1)); the draws are
kept so that statistics across units (the share of heads below the threshold) get an interval from the
same resamples (:func:`share_below`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from astrostats.seeding import numpy_rng
from astrostats.stats._common import check_confidence
from astrostats.validation import check_float, check_int, fail

METHOD = "crossed bootstrap over sequences x seeds (Owen 2007), percentile CI"


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(resamples, n) how often each of n indices was drawn, per row of ``indices`` (a row-wise bincount in one
    pass; the indices are drawn in one call, the same stream as one call per resample)."""
    return (indices[:, :, None] == np.arange(n)).sum(axis=1).astype(np.float64)


def crossed_draws(values: Any, n_resamples: int, seed: Any = 0) -> np.ndarray:
    """Bootstrap means of ``values`` (units, seeds, sequences): (n_resamples, units), sequences and seeds
    resampled independently, the same indices for every unit. NaN cells are left out of each mean."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3:
        raise fail("values", "an array (units, seeds, sequences)", values.shape)
    n_resamples = check_int("n_resamples", n_resamples, minimum=1)
    rng = numpy_rng(seed)
    _, n_seeds, n_sequences = values.shape
    seed_weights = _counts(rng.integers(0, n_seeds, (n_resamples, n_seeds)), n_seeds)
    sequence_weights = _counts(rng.integers(0, n_sequences, (n_resamples, n_sequences)), n_sequences)
    present = np.isfinite(values)
    filled = np.where(present, values, 0.0)
    total = np.einsum("bs,usn,bn->bu", seed_weights, filled, sequence_weights)
    count = np.einsum("bs,usn,bn->bu", seed_weights, present.astype(np.float64), sequence_weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def crossed_bootstrap(values: Any, threshold: float, *, n_resamples: int = 1000, seed: Any = 0,
                      confidence: float = 0.95) -> tuple[pd.DataFrame, np.ndarray]:
    """Per unit of ``values`` (units, seeds, sequences): mean, CI, and one-sided p-values against ``threshold``.

    ``p_above``: bootstrap p of H0 mean <= threshold (small when the mean is clearly above it);
    ``p_below``: of H0 mean >= threshold. Both are (k + 1) / (B + 1) with k the resampled means on the null's
    side (the test that inverts the percentile interval). Returns (table, draws (n_resamples, units)).

    Examples
    --------
    >>> import numpy as np
    >>> values = 0.3 + np.linspace(-0.01, 0.01, 32).reshape(1, 4, 8)  # one head, 4 seeds x 8 sequences
    >>> table, draws = crossed_bootstrap(values, 0.1, n_resamples=99, seed=0)
    >>> round(float(table["statistic"][0]), 3), float(table["p_above"][0]), draws.shape
    (0.3, 0.01, (99, 1))
    """
    confidence = check_confidence(confidence)
    threshold = check_float("threshold", threshold)
    values = np.asarray(values, dtype=np.float64)
    draws = crossed_draws(values, n_resamples, seed)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(values.reshape(values.shape[0], -1), axis=1)
    tail = (1 - confidence) / 2
    low, high = np.nanquantile(draws, [tail, 1 - tail], axis=0) if len(draws) else (mean * np.nan,) * 2
    finite = np.isfinite(draws)
    above = ((draws <= threshold) & finite).sum(axis=0)
    below = ((draws >= threshold) & finite).sum(axis=0)
    valid = finite.sum(axis=0)
    table = pd.DataFrame({
        "statistic": mean, "ci_low": low, "ci_high": high,
        "p_above": (above + 1) / (valid + 1), "p_below": (below + 1) / (valid + 1),
        "n_seeds": values.shape[1], "n_sequences": values.shape[2],
        "n": np.isfinite(values).reshape(values.shape[0], -1).sum(axis=1), "method": METHOD})
    return table, draws


def share_below(means: Any, draws: np.ndarray, threshold: float, confidence: float = 0.95) -> dict:
    """Share of units whose mean is below ``threshold``, with a percentile CI from the same crossed draws."""
    confidence = check_confidence(confidence)
    means = np.asarray(means, dtype=np.float64)
    shares = (draws < threshold).mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(shares, [tail, 1 - tail])
    return {"statistic": float((means < threshold).mean()), "ci_low": float(low), "ci_high": float(high),
            "n": int(means.size), "method": METHOD}


__all__ = ["crossed_draws", "crossed_bootstrap", "share_below", "METHOD"]
