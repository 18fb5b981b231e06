"""Convergence diagnostics and the trustworthiness verdict of an LLC estimate.

`assess` turns the raw diagnostics into `trustworthy` (bool) and `warnings` (the reasons). Each reason is a
documented threshold in `Thresholds`; an untrustworthy estimate is returned, flagged, never dropped or clipped.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The floors and ceilings behind the verdict.

    Attributes:
        min_acceptance: Metropolis acceptance (mean over chains) below this means the proposals do not fit the
            posterior; 0.5 for SGLD's MALA check and for Metropolis-corrected runs (optimal HMC is ~0.65-0.8).
        max_rhat: split R-hat of the loss trace across chains.
        max_trend: |nbeta x change of the loss from the third to the fourth quarter of the draws| relative to
            |llc|, flagged when the change is also significant across chains (two-sided t test, p < 1%).
        max_below_init: share of draws with a loss below L(w*); many means w* is not a local minimum.
        draw_metric_min: the lowest acceptable value of the user's draw metric (None: no floor).
        bound_fraction: with Hessian bounds (from `llc_bounds`), an estimate below this fraction of the
            effective half-rank is flagged.
    """

    min_acceptance: float = 0.5
    max_rhat: float = 1.1
    max_trend: float = 0.1
    max_below_init: float = 0.1
    draw_metric_min: Optional[float] = None
    bound_fraction: float = 0.85


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


def second_half_trend(trace: np.ndarray, nbeta: float) -> tuple[float, float]:
    """(nbeta x the mean change from the third to the fourth quarter of the draws, and its t statistic).

    The change is taken per chain and its standard error from the spread across chains, so autocorrelation
    within a chain cannot make it look significant. NaN with fewer than 2 chains or 8 draws.
    """
    trace = np.asarray(trace, dtype=np.float64)
    c, m = trace.shape
    if c < 2 or m < 8:
        return float("nan"), float("nan")
    q = m // 4
    d = nbeta * (trace[:, 3 * q:4 * q].mean(axis=1) - trace[:, 2 * q:3 * q].mean(axis=1))  # [chains]
    se = d.std(ddof=1) / math.sqrt(c)
    return float(d.mean()), float(d.mean() / se) if se > 0 else (0.0 if d.mean() == 0 else math.inf)


def summarize(loss_trace: np.ndarray, init_loss: float, acceptance: np.ndarray, nbeta: float) -> dict:
    """Scalar diagnostics: acceptance, share of draws below L(w*), split R-hat, second-half trend."""
    acc = np.asarray(acceptance, dtype=np.float64)
    trend, trend_t = second_half_trend(loss_trace, nbeta)
    return {
        "mala_acceptance": float(acc.mean()) if acc.size else float("nan"),
        "mala_acceptance_per_chain": acc.mean(axis=1).tolist() if acc.size else [],
        "frac_below_init_loss": float((loss_trace < init_loss).mean()),
        "rhat_loss": split_rhat(loss_trace),
        "trend_second_half": trend,
        "trend_second_half_t": trend_t,
        "max_draw_loss": float(np.max(loss_trace)),
    }


def assess(diag: dict, llc_per_chain: np.ndarray, num_sampled: int, th: Thresholds,
           bounds: Optional[dict] = None) -> tuple[bool, list]:
    """The verdict: (trustworthy, reasons). Reads the keys written by `summarize` and the draw-metric keys, and
    the Hessian bounds when given."""
    reasons = []
    llc = float(np.mean(llc_per_chain))
    se = float(np.std(llc_per_chain, ddof=1) / math.sqrt(len(llc_per_chain))) if len(llc_per_chain) > 1 else 0.0
    if not np.all(np.isfinite(llc_per_chain)):
        reasons.append("non-finite LLC")
    if llc < 0 and llc < -3 * se:
        reasons.append(f"negative LLC ({llc:.4g}, {abs(llc) / se if se else math.inf:.1f} standard errors below 0): "
                       "w* is not a local minimum of this loss, or the sampler is mis-tuned")
    if llc - num_sampled / 2 > max(3 * se, 0.1 * num_sampled / 2):
        reasons.append(f"LLC {llc:.4g} above its upper bound d/2 = {num_sampled / 2:g}: the chains left the "
                       "neighbourhood of w* (step size too large?)")
    elif np.max(llc_per_chain) > 10 * num_sampled / 2 + 10:
        reasons.append(f"exploding chain: a chain's LLC is {np.max(llc_per_chain):.4g}, far above d/2 = "
                       f"{num_sampled / 2:g} (step size too large?)")
    acc = diag.get("mala_acceptance", math.nan)
    if math.isfinite(acc) and acc < th.min_acceptance:
        reasons.append(f"Metropolis acceptance {acc:.3f} below {th.min_acceptance}: the step size is too large "
                       "for this posterior")
    rhat = diag.get("rhat_loss", math.nan)
    if math.isfinite(rhat) and rhat > th.max_rhat:
        reasons.append(f"R-hat {rhat:.3f} above {th.max_rhat}: the chains disagree")
    elif rhat == math.inf:
        reasons.append("R-hat is infinite: the chains are constant but disagree")
    trend, t_stat = diag.get("trend_second_half", math.nan), diag.get("trend_second_half_t", math.nan)
    t_crit = float(stats.t.ppf(0.995, max(len(llc_per_chain) - 1, 1)))
    if math.isfinite(trend) and abs(trend) > th.max_trend * max(abs(llc), 1e-12) and abs(t_stat) > t_crit:
        reasons.append(f"the loss is still trending in the second half of the draws (nbeta x change {trend:.4g} "
                       f"from the third to the fourth quarter, t = {t_stat:.1f} across chains; "
                       f"{th.max_trend:.0%} of the LLC is the limit): burn-in or draws too short")
    below = diag.get("frac_below_init_loss", 0.0)
    if below > th.max_below_init:
        reasons.append(f"{below:.0%} of the draws have a loss below L(w*): w* is not a local minimum")
    metric_min = diag.get("draw_metric_min")
    if th.draw_metric_min is not None and metric_min is not None and metric_min < th.draw_metric_min:
        reasons.append(f"the draw metric fell to {metric_min:.4g} (floor {th.draw_metric_min}): the sampled "
                       "weights stopped doing the job (the chains left the basin)")
    if bounds is not None and llc < th.bound_fraction * bounds["effective_half_rank"]:
        reasons.append(f"LLC {llc:.4g} below {th.bound_fraction} x the effective half-rank "
                       f"{bounds['effective_half_rank']:.4g} of the Hessian at w*: the posterior is not the "
                       "quadratic one near w* (the chains found flatter regions, or have not mixed)")
    return not reasons, reasons


def settings_line(cfg, nbeta) -> str:
    """One line of sampler settings for figure titles: step size, localization, nbeta, batch, chains x draws."""
    return (f"eps={cfg.step_size:g}, gamma={cfg.localization:g}, nbeta={nbeta:.3g}, batch={cfg.batch_size}, "
            f"{cfg.num_chains}x{cfg.num_draws} draws, burn-in {cfg.num_burnin}")


def trace_record(res, max_points: int | None = 200) -> dict:
    """The per-chain diagnostics of one `LLCResult`, JSON-friendly, for `llc_estim.plotting.plot_trace_panel` / `plot_trace_grid`.

    The loss over every iteration (burn-in, then draws) and the running Metropolis acceptance are thinned to at
    most `max_points` per chain (None: all); `burnin`, `stride` and `acceptance_stride` (iterations between two
    kept acceptance values, the test interval included) keep the iteration axis exact.
    """
    full = np.concatenate([res.burnin_trace, res.loss_trace], axis=1)
    stride = 1 if max_points is None or full.shape[1] <= max_points else int(np.ceil(full.shape[1] / max_points))
    acc = np.asarray(getattr(res, "acceptance_trace", np.zeros((0, 0))), dtype=float)
    running = (np.cumsum(acc, axis=1) / np.arange(1, acc.shape[1] + 1)) if acc.size else np.zeros((0, 0))
    acc_stride = 1 if max_points is None or running.shape[1] <= max_points else int(np.ceil(running.shape[1] / max_points))
    # iterations between Metropolis tests: every iteration for Metropolis runs, every `mala_every` for SGLD's probe
    every = 1 if res.config.metropolis else max(int(res.config.mala_every or 1), 1)
    d = res.diagnostics
    return {"loss": full[:, ::stride].tolist(), "stride": stride, "burnin": int(res.burnin_trace.shape[1]),
            "acceptance": running[:, ::acc_stride].tolist(), "acceptance_stride": acc_stride * every,
            "init_loss": float(res.init_loss), "llc_mean": float(res.llc_mean), "llc_std": float(res.llc_std),
            "trustworthy": d.get("trustworthy"), "warnings": list(d.get("warnings", [])),
            "settings": settings_line(res.config, res.nbeta)}
