"""Patient-level nonparametric bootstrap, vectorised (docs/methods.md: 2000 replicates, percentile intervals).

Every bootstrapped metric here is a function of sums over patients (confusion-matrix cells, per-bin sums for the
ECE, Brier terms). A replicate draws N patients with replacement; patient i is drawn w_i times, so each sum in
the replicate is Σ_i w_i·x_i. We draw the w of a block of replicates at once (uniform indices -> bincount), and
one matrix product W @ X gives every sum of every replicate in the block: 100,000 patients × 2,000 replicates in
a couple of seconds on two cores, the same resampling as drawing patient indices one replicate at a time.

Patient level: when a patient has several rows, the patient is the unit: rows are summed per patient first
and patients are resampled.
"""

from __future__ import annotations

import numpy as np

REPLICATES = 2000
SEED = 42
LEVEL = 0.95
BLOCK_ELEMENTS = 5_000_000  # replicates per block × patients: bounds the weight matrix at ~40 MB


def per_cluster(design: np.ndarray, clusters: np.ndarray | None) -> np.ndarray:
    """Sum the rows of ``design`` (N×q) per cluster (patient); unchanged when every row is its own patient."""
    design = np.asarray(design, dtype=np.float64)
    if clusters is None:
        return design
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    n_clusters = int(inverse.max()) + 1 if inverse.size else 0
    if n_clusters == design.shape[0]:
        return design
    return np.stack([np.bincount(inverse, weights=design[:, j], minlength=n_clusters)
                     for j in range(design.shape[1])], axis=1)


def bootstrap_sums(design: np.ndarray, clusters: np.ndarray | None = None, replicates: int = REPLICATES,
                   seed: int = SEED) -> np.ndarray:
    """Column sums of ``design`` in each of ``replicates`` patient-level bootstrap samples: shape (B, q)."""
    x = per_cluster(design, clusters)
    n, q = x.shape
    out = np.zeros((replicates, q))
    if n == 0 or replicates == 0:
        return out
    rng = np.random.default_rng(seed)
    block = max(1, min(replicates, BLOCK_ELEMENTS // n))
    # single precision for the product: counts and indicator sums stay exact (integers < 2^24), continuous sums
    # carry a relative error of ~1e-6 (measured at 100,000 patients: ECE and Brier within 2e-7), far below the
    # bootstrap's own Monte-Carlo error, for about half the time of double precision
    x32 = x.astype(np.float32)
    for start in range(0, replicates, block):
        b = min(block, replicates - start)
        draws = rng.integers(0, n, size=(b, n), dtype=np.int32).astype(np.int64)  # int32 draws are ~3× faster
        draws += (np.arange(b, dtype=np.int64) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float32)
        out[start:start + b] = weights @ x32
    return out


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval over replicates (axis 0), ignoring replicates where the metric is undefined (NaN).

    Returns (lo, hi, defined) with ``defined`` the number of replicates that entered each interval. The
    quantile is numpy's linear (R type 7), as pROC's bootstrap intervals.
    """
    values = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(values).sum(axis=0)
    alpha = (1 - level) / 2
    lo = np.full(values.shape[1:], np.nan)
    hi = np.full(values.shape[1:], np.nan)
    ok = defined > 0
    if np.any(ok):
        with np.errstate(all="ignore"):
            q = np.nanquantile(values[:, ok], [alpha, 1 - alpha], axis=0) if values.ndim > 1 else \
                np.nanquantile(values, [alpha, 1 - alpha])
        if values.ndim > 1:
            lo[ok], hi[ok] = q[0], q[1]
        else:
            lo, hi = np.asarray(q[0]), np.asarray(q[1])
    return lo, hi, defined
