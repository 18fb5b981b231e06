"""Step-size (and localization / nbeta) sweeps with a documented rule for picking a setting."""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from typing import Optional, Sequence

import numpy as np

from llc_estim.config import SGLDConfig, SGLDDivergenceError
from llc_estim.sampler import LLCWarning, estimate_llc

RULE = ("largest step size whose run did not diverge, had MALA acceptance >= {min_acceptance} and an LLC within "
        "max({k} combined standard deviations, {rel:.0%}) of the next smaller stable step size (the flat region); "
        "if no pair is flat: the largest stable step size with acceptance >= 0.9 (else the largest stable one), "
        "flagged as not flat")


@dataclasses.dataclass
class CalibrationResult:
    """One row per setting: step_size, localization, nbeta, llc_mean, llc_std, acceptance, diverged."""

    table: list
    recommended: Optional[SGLDConfig]
    rule: str
    flat: bool = False  # whether the recommendation lies in a flat region

    @property
    def largest_stable_step(self) -> float:
        """The largest step size that neither diverged nor fell below the acceptance threshold (nan if none)."""
        ok = [r["step_size"] for r in self.table if r.get("stable")]
        return max(ok) if ok else math.nan

    def figure(self):
        from llc_estim.plotting import plot_calibration

        return plot_calibration(self)


def calibrate(model, data, loss_fn, base: SGLDConfig, step_sizes: Sequence[float],
              localizations: Optional[Sequence[float]] = None, nbetas: Optional[Sequence[Optional[float]]] = None,
              min_acceptance: float = 0.5, k: float = 2.0, rel: float = 0.1, collate_fn=None) -> CalibrationResult:
    """Runs short estimates on a grid and recommends a setting (see `RULE`).

    Args:
        base: every other hyperparameter (chains, draws, burn-in, batch size, seed) comes from here.
        step_sizes: the epsilon grid (a log grid, e.g. `np.logspace(-7, -3, 9)`).
        localizations, nbetas: optional grids; default to the base values.
    """
    step_sizes = list(step_sizes)
    if not step_sizes:
        raise ValueError("calibrate needs at least one step size in step_sizes")
    for eps in step_sizes:
        SGLDConfig(step_size=eps)  # validates each value (finite, > 0)
    table = []
    for gamma, nbeta, eps in itertools.product(localizations or [base.localization], nbetas or [base.nbeta],
                                               sorted(step_sizes)):
        cfg = dataclasses.replace(base, step_size=float(eps), localization=float(gamma), nbeta=nbeta)
        row = {"step_size": float(eps), "localization": float(gamma), "nbeta": nbeta}
        try:
            with warnings.catch_warnings():  # each row records its own verdict
                warnings.simplefilter("ignore", LLCWarning)
                res = estimate_llc(model, data, loss_fn, cfg, collate_fn=collate_fn)
            row.update(llc_mean=res.llc_mean, llc_std=res.llc_std, acceptance=res.diagnostics["mala_acceptance"],
                       frac_below_init=res.diagnostics["frac_below_init_loss"], nbeta_resolved=res.nbeta,
                       diverged=False, trustworthy=res.trustworthy, warnings=res.diagnostics["warnings"])
        except SGLDDivergenceError:
            row.update(llc_mean=math.nan, llc_std=math.nan, acceptance=math.nan, frac_below_init=math.nan,
                       nbeta_resolved=math.nan, diverged=True, trustworthy=False, warnings=["diverged"])
        table.append(row)
    for row in table:
        row["stable"] = bool(not row["diverged"] and np.isfinite(row["llc_mean"]) and row["acceptance"] >= min_acceptance)
    best, flat = _recommend(table, k, rel)
    rec = None if best is None else dataclasses.replace(
        base, step_size=best["step_size"], localization=best["localization"], nbeta=best["nbeta"])
    return CalibrationResult(table, rec, RULE.format(min_acceptance=min_acceptance, k=k, rel=rel), flat)


def _recommend(table: list, k: float, rel: float) -> tuple:
    groups: dict = {}
    for row in table:
        groups.setdefault((row["localization"], row["nbeta"]), []).append(row)
    choice, choice_flat = None, False
    for rows in groups.values():
        stable = [r for r in sorted(rows, key=lambda r: r["step_size"]) if r["stable"]]
        flat = [b for a, b in zip(stable, stable[1:])
                if abs(b["llc_mean"] - a["llc_mean"]) <= max(k * math.hypot(a["llc_std"] or 0, b["llc_std"] or 0),
                                                             rel * abs(b["llc_mean"]))]
        if flat:
            pick, is_flat = flat[-1], True
        else:
            mixed = [r for r in stable if r["acceptance"] >= 0.9]
            pick, is_flat = (mixed or stable or [None])[-1], False
        better = pick is not None and (choice is None or (is_flat, pick["step_size"]) > (choice_flat, choice["step_size"]))
        if better:
            choice, choice_flat = pick, is_flat
    return choice, choice_flat
