"""Convergence diagnostics for SGLD loss traces."""

from __future__ import annotations

import numpy as np


def split_rhat(trace: np.ndarray) -> float:
    """Split R-hat (Gelman et al.) of a [chains, draws] trace; ~1 when chains agree. NaN if too short."""
    trace = np.asarray(trace, dtype=np.float64)
    c, n = trace.shape
    half = n // 2
    if half < 2:
        return float("nan")
    chains = np.concatenate([trace[:, :half], trace[:, half:2 * half]], axis=0)  # [2c, half]
    means = chains.mean(axis=1)
    w = chains.var(axis=1, ddof=1).mean()
    b = half * means.var(ddof=1)
    if w == 0:
        return float("nan") if b == 0 else float("inf")
    var_plus = (half - 1) / half * w + b / half
    return float(np.sqrt(var_plus / w))


def summarize(loss_trace: np.ndarray, init_loss: float, acceptance: np.ndarray) -> dict:
    """Scalar diagnostics: MALA acceptance, share of draws below L(w*), split R-hat."""
    acc = np.asarray(acceptance, dtype=np.float64)
    return {
        "mala_acceptance": float(acc.mean()) if acc.size else float("nan"),
        "mala_acceptance_per_chain": acc.mean(axis=1).tolist() if acc.size else [],
        "frac_below_init_loss": float((loss_trace < init_loss).mean()),
        "rhat_loss": split_rhat(loss_trace),
        "diverged": False,
    }
