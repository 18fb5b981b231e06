"""Does one training curve lead another? Lead-lag statistics that respect autocorrelation.

Training curves are strongly autocorrelated (smooth trends), so correlating two of them, or their raw
checkpoint-to-checkpoint changes, finds "significant" correlations at every lag. Two methods here do not:

1. **Event timing across seeds** (`events`, `event_lead`): in each independent run (seed), find a turning point of
   each series (its peak; the point where it has fallen half-way from the peak to its final value) and take the
   difference of their training steps. Runs are independent, so the mean difference across runs has an ordinary
   t-interval (and a bootstrap interval as a check); no within-run autocorrelation enters.
2. **Pre-whitened cross-correlation** (`prewhitened_ccf`, `pooled_ccf`; Box & Jenkins): difference both series, fit
   an autoregressive model to the leading candidate x (order by AIC), filter both series with it, and correlate the
   filtered x (white noise) with the filtered y at lags -K..K. Against a white series the sample cross-correlation
   has variance 1/n whatever y's autocorrelation (Bartlett), so the usual z-test is valid. Across runs the
   per-lag correlations are pooled by Fisher's z.

Every family of tests is corrected for the number of tests tried (Holm), and intervals for a family are
simultaneous (Bonferroni). Sign convention throughout: a **positive lead or lag means x (the first series, the LLC
in the studies) moves first**; y follows it that many steps or checkpoints later.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Optional, Sequence

import numpy as np
from scipy import stats


def holm(pvalues: Sequence[float]) -> list:
    """Holm-adjusted p-values (family-wise error control); NaNs stay NaN and do not count as tests.

    Sorted ascending, p_(i) becomes max_{j <= i} min(1, (m - j + 1) p_(j)) (Holm 1979; what
    `statsmodels.stats.multitest.multipletests(method="holm")` returns, without its per-call garbage collection).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.where(np.isfinite(p))[0]
    m = len(ok)
    if m:
        order = ok[np.argsort(p[ok], kind="stable")]
        adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
        out[order] = np.maximum.accumulate(adj)
    return out.tolist()


def running_median(y: Sequence[float], k: int = 3) -> np.ndarray:
    """Centred running median of odd width k (edges use the available points): one outlying checkpoint cannot
    make a peak."""
    y = np.asarray(y, dtype=float)
    if k <= 1 or len(y) < k:
        return y.copy()
    h = k // 2
    return np.array([np.nanmedian(y[max(0, i - h): i + h + 1]) for i in range(len(y))])


@dataclasses.dataclass(frozen=True)
class Events:
    """Turning points of one series (indices into its checkpoints; None when the series has none).

    Attributes:
        peak: index of the maximum of the running-median-smoothed series.
        turn: the peak, if the series then falls by at least `min_drop` of the peak value (a rise-then-fall turning
            point); None when it does not fall that much (e.g. it peaks at the end).
        half_decline: after a turn, the first index where the smoothed series has fallen half-way from the peak to
            its final level (mean of the last 3 smoothed points).
        drop: (peak - final) / |peak|.
    """

    peak: int
    turn: Optional[int]
    half_decline: Optional[int]
    drop: float


def events(y: Sequence[float], smooth: int = 3, min_drop: float = 0.3) -> Events:
    """The peak, turning point and half-decline of a curve (see `Events`)."""
    s = running_median(y, smooth)
    if not np.isfinite(s).any():
        raise ValueError("the series has no finite value")
    peak = int(np.nanargmax(s))
    final = float(np.nanmean(s[-3:]))
    top = float(s[peak])
    drop = (top - final) / abs(top) if top != 0 else 0.0
    turn = half = None
    if drop >= min_drop:
        turn = peak
        level = 0.5 * (top + final)
        after = np.where(s[peak:] <= level)[0]
        half = int(peak + after[0]) if len(after) else None
    return Events(peak, turn, half, float(drop))


def event_steps(steps: Sequence[float], y: Sequence[float], smooth: int = 3, min_drop: float = 0.3) -> dict:
    """`events` in training steps, interpolated between checkpoints (in log-step) so the timing is not quantised
    to the checkpoint grid: the peak from the parabola through the smoothed maximum and its two neighbours, the
    half-decline from the straight line between the two checkpoints that bracket the half-way level.

    Returns {"peak", "turn", "half_decline"} in steps (None where `events` has none) and "index" (the `Events`).
    """
    steps = np.asarray(steps, float)
    e = events(y, smooth, min_drop)
    s = running_median(y, smooth)
    u = np.log(steps)

    def peak_step(i):
        if 0 < i < len(s) - 1 and np.isfinite(s[i - 1: i + 2]).all():
            x3, y3 = u[i - 1: i + 2], s[i - 1: i + 2]
            den = (x3[0] - x3[1]) * (x3[0] - x3[2]) * (x3[1] - x3[2])
            a = (x3[2] * (y3[1] - y3[0]) + x3[1] * (y3[0] - y3[2]) + x3[0] * (y3[2] - y3[1])) / den
            b = (x3[2] ** 2 * (y3[0] - y3[1]) + x3[1] ** 2 * (y3[2] - y3[0]) + x3[0] ** 2 * (y3[1] - y3[2])) / den
            if a < 0:
                return float(np.exp(np.clip(-b / (2 * a), x3[0], x3[2])))
        return float(steps[i])

    peak = peak_step(e.peak)
    half = None
    if e.half_decline is not None:
        j = e.half_decline
        top, final = float(s[e.peak]), float(np.nanmean(s[-3:]))
        level = 0.5 * (top + final)
        if j > e.peak and s[j - 1] != s[j]:
            frac = (s[j - 1] - level) / (s[j - 1] - s[j])
            half = float(np.exp(u[j - 1] + np.clip(frac, 0, 1) * (u[j] - u[j - 1])))
        else:
            half = float(steps[j])
    return {"peak": peak, "turn": peak if e.turn is not None else None, "half_decline": half,
            "index": dataclasses.asdict(e)}


def event_lead(x_steps: Sequence[Optional[float]], y_steps: Sequence[Optional[float]], alpha: float = 0.05,
               n_boot: int = 2000, seed: int = 0, log: bool = False) -> dict:
    """How much earlier an event happens in x than in y, across independent runs.

    Args:
        x_steps, y_steps: per run, the training step of the event in x and in y (None: no event; the run is left
            out of this comparison and counted).
        log: compare log10 steps (a ratio of times) instead of steps.

    Returns:
        {"n": runs with both events, "lead_per_run": y - x per run (positive: x first), "mean", "median",
         "ci": t-interval of the mean at 1 - alpha, "ci_bootstrap": BCa bootstrap interval of the mean,
         "p": two-sided one-sample t-test of mean 0, "p_wilcoxon": signed-rank test, "excluded": runs left out}.
        With fewer than 3 runs the intervals and p-values are NaN (and say so in "note").
    """
    pairs = [(x, y) for x, y in zip(x_steps, y_steps) if x is not None and y is not None]
    excluded = len(list(x_steps)) - len(pairs)
    f = (lambda v: math.log10(v)) if log else float
    d = np.array([f(y) - f(x) for x, y in pairs], dtype=float)
    out = {"n": int(len(d)), "lead_per_run": d.tolist(), "excluded": int(excluded), "log10_steps": log,
           "mean": float(d.mean()) if len(d) else math.nan, "median": float(np.median(d)) if len(d) else math.nan,
           "ci": [math.nan, math.nan], "ci_bootstrap": [math.nan, math.nan], "p": math.nan, "p_wilcoxon": math.nan,
           "alpha": alpha, "note": ""}
    if len(d) < 3:
        out["note"] = f"only {len(d)} runs have both events: no interval or test"
        return out
    sd = float(d.std(ddof=1))
    if sd == 0:
        out.update(ci=[float(d.mean())] * 2, ci_bootstrap=[float(d.mean())] * 2,
                   p=0.0 if d.mean() != 0 else 1.0, note="every run gives the same lead")
        return out
    tq = stats.t.ppf(1 - alpha / 2, len(d) - 1)
    half = tq * sd / math.sqrt(len(d))
    out["ci"] = [float(d.mean() - half), float(d.mean() + half)]
    out["p"] = float(stats.ttest_1samp(d, 0.0).pvalue)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
        boot = stats.bootstrap((d,), np.mean, confidence_level=1 - alpha, n_resamples=n_boot, method="BCa",
                               random_state=np.random.default_rng(seed))
    lo, hi = boot.confidence_interval
    out["ci_bootstrap"] = [float(lo), float(hi)]
    return out


def ccf(x: np.ndarray, y: np.ndarray, max_lag: int) -> dict:
    """Sample cross-correlations r_k = corr(x_t, y_{t+k}) for k = -max_lag..max_lag, and the pairs behind each.

    Positive k: x at time t goes with y k checkpoints later (x leads).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    out = {}
    for k in range(-max_lag, max_lag + 1):
        a, b = (x[: n - k], y[k:]) if k >= 0 else (x[-k:], y[: n + k])
        if len(a) < 4 or a.std() == 0 or b.std() == 0:
            out[k] = (math.nan, len(a))
        else:
            out[k] = (float(np.corrcoef(a, b)[0, 1]), len(a))
    return out


def fit_ar(x: np.ndarray, max_order: int) -> np.ndarray:
    """AR coefficients phi_1..phi_p of a zero-mean series, p <= max_order chosen by AIC, each order fitted by least
    squares on the same sample (t >= max_order), as `statsmodels.tsa.ar_model.ar_select_order(..., trend="n")`."""
    n = len(x)
    if max_order < 1 or n - max_order < 4:
        return np.zeros(0)
    y = x[max_order:]
    lags = np.column_stack([x[max_order - i: n - i] for i in range(1, max_order + 1)])
    best, best_aic = np.zeros(0), len(y) * math.log(max(float(np.mean(y ** 2)), 1e-300))
    for p in range(1, max_order + 1):
        phi, *_ = np.linalg.lstsq(lags[:, :p], y, rcond=None)
        resid = y - lags[:, :p] @ phi
        aic = len(y) * math.log(max(float(np.mean(resid ** 2)), 1e-300)) + 2 * p
        if aic < best_aic:
            best, best_aic = phi, aic
    return best


def prewhiten(x: Sequence[float], y: Sequence[float], difference: bool = True, max_order: Optional[int] = None
              ) -> tuple[np.ndarray, np.ndarray, int]:
    """Box-Jenkins pre-whitening: (filtered x, filtered y, AR order). Both series are differenced first (when
    `difference`), an AR(p) model with p chosen by AIC (p <= max_order, default n/5) is fitted to x (`fit_ar`), and
    the same filter is applied to y."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if difference:
        x, y = np.diff(x), np.diff(y)
    x, y = x - x.mean(), y - y.mean()
    n = len(x)
    max_order = max(0, min(max_order if max_order is not None else n // 5, n // 3))
    phi = fit_ar(x, max_order) if x.std() > 0 else np.zeros(0)
    order = len(phi)

    def filt(s):
        return s[order:] - sum(phi[i] * s[order - 1 - i: len(s) - 1 - i] for i in range(order)) if order else s

    return filt(x), filt(y), order


def prewhitened_ccf(x: Sequence[float], y: Sequence[float], max_lag: int, difference: bool = True,
                    alpha: float = 0.05) -> dict:
    """Pre-whitened cross-correlation of one pair of series, with Holm-adjusted p-values over the 2K+1 lags.

    Returns:
        {"lags", "r", "n" (pairs per lag), "p" (z-test with variance 1/n), "p_holm", "ar_order",
         "significant_lags" (Holm-adjusted p < alpha)}.
    """
    xf, yf, order = prewhiten(x, y, difference)
    c = ccf(xf, yf, max_lag)
    lags = sorted(c)
    r = [c[k][0] for k in lags]
    n = [c[k][1] for k in lags]
    p = [float(2 * stats.norm.sf(abs(ri) * math.sqrt(ni))) if np.isfinite(ri) else math.nan for ri, ni in zip(r, n)]
    ph = holm(p)
    return {"lags": lags, "r": r, "n": n, "p": p, "p_holm": ph, "ar_order": order, "alpha": alpha,
            "significant_lags": [k for k, q in zip(lags, ph) if np.isfinite(q) and q < alpha]}


def _pool(per_run: list, lags: list) -> tuple[np.ndarray, np.ndarray]:
    """Fisher-z pooling: (pooled z per lag, its standard error)."""
    z = np.zeros(len(lags))
    w = np.zeros(len(lags))
    for run in per_run:
        for j, (r, n) in enumerate(zip(run["r"], run["n"])):
            if np.isfinite(r) and n > 3:
                z[j] += (n - 3) * math.atanh(max(min(r, 0.999999), -0.999999))
                w[j] += n - 3
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w > 0, z / w, np.nan), np.where(w > 0, 1 / np.sqrt(w), np.nan)


def pooled_ccf(pairs: Sequence[tuple], max_lag: int, difference: bool = True, alpha: float = 0.05,
               n_boot: int = 1000, seed: int = 0) -> dict:
    """Pre-whitened cross-correlations of several independent runs, pooled by Fisher's z, Holm over the lags.

    Args:
        pairs: one (x, y) pair of equally spaced series per run.

    Returns:
        {"lags", "r" (pooled), "ci" (simultaneous Bonferroni intervals over the lags), "p", "p_holm",
         "significant_lags", "best_lag" (largest |pooled r|), "best_lag_ci" (percentile interval of the best lag
         over bootstrap resamples of the runs), "runs", "per_run"}.
    """
    per_run = [prewhitened_ccf(x, y, max_lag, difference, alpha) for x, y in pairs]
    lags = list(range(-max_lag, max_lag + 1))
    z, se = _pool(per_run, lags)
    p = [float(2 * stats.norm.sf(abs(zi) / si)) if np.isfinite(zi) else math.nan for zi, si in zip(z, se)]
    ph = holm(p)
    q = stats.norm.ppf(1 - alpha / (2 * len(lags)))
    ci = [[float(np.tanh(zi - q * si)), float(np.tanh(zi + q * si))] if np.isfinite(zi) else [math.nan, math.nan]
          for zi, si in zip(z, se)]
    r = np.tanh(z)
    best = int(lags[int(np.nanargmax(np.abs(r)))]) if np.isfinite(r).any() else None
    best_ci = [math.nan, math.nan]
    if len(per_run) >= 3 and best is not None:
        rng = np.random.default_rng(seed)
        picks = []
        for _ in range(n_boot):
            zb, _ = _pool([per_run[i] for i in rng.integers(0, len(per_run), len(per_run))], lags)
            if np.isfinite(zb).any():
                picks.append(lags[int(np.nanargmax(np.abs(zb)))])
        best_ci = [float(np.percentile(picks, 100 * alpha / 2)), float(np.percentile(picks, 100 * (1 - alpha / 2)))]
    return {"lags": lags, "r": r.tolist(), "ci": ci, "p": p, "p_holm": ph, "alpha": alpha,
            "significant_lags": [k for k, v in zip(lags, ph) if np.isfinite(v) and v < alpha],
            "best_lag": best, "best_lag_r": float(r[lags.index(best)]) if best is not None else math.nan,
            "best_lag_ci": best_ci, "runs": len(per_run),
            "per_run": [{k: v for k, v in d.items() if k in ("r", "p_holm", "ar_order", "significant_lags")}
                        for d in per_run]}
