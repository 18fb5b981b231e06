"""Correlation statistics of paired per-run values that stay honest on few, tied or grouped runs.

- `leave_one_out`: Pearson r with its range when any single point is left out (a correlation that hinges on one
  checkpoint swings widely);
- `spearman_ci`: Spearman's rho with a percentile bootstrap interval over runs;
- `stratified_spearman`: the mean within-group rho with a permutation p-value that group differences cannot drive.

The lead-lag statistics of whole training curves are in `llc_training.leadlag`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def leave_one_out(x: Sequence[float], y: Sequence[float]) -> dict:
    """Pearson r of two series with all points, and its range when any single point is left out (a correlation
    that hinges on one checkpoint swings widely)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 4:
        return {"r": math.nan, "r_min": math.nan, "r_max": math.nan, "n": int(len(x))}
    full = float(np.corrcoef(x, y)[0, 1])
    rs = [float(np.corrcoef(np.delete(x, i), np.delete(y, i))[0, 1]) for i in range(len(x))]
    return {"r": full, "r_min": float(np.nanmin(rs)), "r_max": float(np.nanmax(rs)), "n": int(len(x))}


def _rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of x, y [k, m] (average ranks for ties); NaN where a row is constant."""
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / den, np.nan)


def spearman_ci(x: Sequence[float], y: Sequence[float], alpha: float = 0.05, n_boot: int = 2000,
                seed: int = 0) -> dict:
    """Spearman's rho of paired values with a percentile bootstrap interval (runs resampled) and its p-value.

    NaN pairs are left out (and counted)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"rho": math.nan, "ci": [math.nan, math.nan], "p": math.nan, "n": int(len(x)),
           "left_out": int((~ok).sum())}
    if len(x) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    res = stats.spearmanr(x, y)
    idx = np.random.default_rng(seed).integers(0, len(x), (n_boot, len(x)))
    boots = _rowwise_spearman(x[idx], y[idx])
    lo, hi = np.nanpercentile(boots, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    out.update(rho=float(res.statistic), p=float(res.pvalue), ci=[float(lo), float(hi)])
    return out


def stratified_spearman(x: Sequence[float], y: Sequence[float], strata: Sequence, n_perm: int = 5000,
                        alpha: float = 0.05, seed: int = 0) -> dict:
    """Does x rank y *within* groups (e.g. runs of the same training-set size)? The mean over strata of Spearman's
    rho, a permutation p-value (x shuffled within each stratum, so differences between strata cannot drive it),
    and a percentile interval from resampling runs within each stratum.

    Strata with fewer than 3 runs, or constant x or y, are left out (and counted).
    """
    x, y, strata = np.asarray(x, float), np.asarray(y, float), np.asarray(strata)
    groups = []
    for s in dict.fromkeys(strata.tolist()):
        idx = np.where((strata == s) & np.isfinite(x) & np.isfinite(y))[0]
        if len(idx) >= 3 and np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            groups.append(idx)
    out = {"rho": math.nan, "ci": [math.nan, math.nan], "p": math.nan, "strata": len(groups),
           "left_out": int(len(set(strata.tolist())) - len(groups))}
    if not groups:
        return out
    rng = np.random.default_rng(seed)
    obs, null, boot = [], [], []
    for g in groups:
        xg, yg = x[g], y[g]
        obs.append(_rowwise_spearman(xg[None], yg[None])[0])
        perm = np.argsort(rng.random((n_perm, len(g))), axis=1)
        null.append(_rowwise_spearman(xg[perm], np.broadcast_to(yg, (n_perm, len(g)))))
        pick = rng.integers(0, len(g), (min(n_perm, 2000), len(g)))
        boot.append(_rowwise_spearman(xg[pick], yg[pick]))
    obs = float(np.mean(obs))
    null = np.nanmean(np.stack(null), axis=0)
    boot = np.nanmean(np.stack(boot), axis=0)
    lo, hi = np.nanpercentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    out.update(rho=obs, p=float((np.sum(np.abs(null) >= abs(obs) - 1e-12) + 1) / (n_perm + 1)),
               ci=[float(lo), float(hi)])
    return out
