"""Lead-lag and correlation statistics on synthetic series whose answer is known."""

import math

import numpy as np
import pytest

from llc_training import correlation, leadlag


def _ar1(rng, n, phi=0.6):
    e = rng.normal(size=n)
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def _bump(steps, centre, width, height=1.0):
    return height * np.exp(-0.5 * ((np.asarray(steps, float) - centre) / width) ** 2)


def test_holm_matches_the_definition():
    p = [0.01, 0.04, 0.03, 0.2]
    # sorted 0.01, 0.03, 0.04, 0.2 -> x4, x3, x2, x1, cumulative max
    assert np.allclose(leadlag.holm(p), [0.04, 0.09, 0.09, 0.2])
    assert math.isnan(leadlag.holm([0.01, math.nan])[1])


def test_events_find_the_turn_and_ignore_a_series_that_never_falls():
    steps = np.arange(100)
    y = _bump(steps, 30, 8) + 0.1
    e = leadlag.events(y)
    assert abs(e.peak - 30) <= 1 and e.turn == e.peak and 30 < e.half_decline < 45
    rising = leadlag.events(np.linspace(0, 1, 50))
    assert rising.turn is None and rising.half_decline is None
    spike = np.ones(40)
    spike[10] = 50.0  # a single outlying checkpoint does not make a peak
    assert leadlag.events(spike).turn is None


def test_event_lead_recovers_a_known_lead_with_an_interval():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 2000, 10)
    x_t, y_t = [], []
    for _ in range(8):
        c = rng.uniform(400, 800)
        x = _bump(steps, c, 80) + 0.02 * rng.normal(size=len(steps))
        y = _bump(steps, c + 150, 80) + 0.02 * rng.normal(size=len(steps))
        x_t.append(int(steps[leadlag.events(x).turn]))
        y_t.append(int(steps[leadlag.events(y).turn]))
    res = leadlag.event_lead(x_t, y_t)
    assert res["n"] == 8 and res["ci"][0] < 150 < res["ci"][1] and res["ci"][0] > 0 and res["p"] < 0.01
    assert res["ci_bootstrap"][0] > 0


def test_event_lead_without_a_lead_and_with_missing_events():
    rng = np.random.default_rng(1)
    x = rng.uniform(100, 200, size=10)
    y = x + rng.normal(0, 20, size=10)
    res = leadlag.event_lead(list(x), list(y))
    assert res["ci"][0] < 0 < res["ci"][1]
    few = leadlag.event_lead([1, None, 3], [2, 5, None])
    assert few["n"] == 1 and few["excluded"] == 2 and math.isnan(few["p"]) and few["note"]


def test_pooled_ccf_finds_a_lead_of_k_checkpoints():
    rng = np.random.default_rng(2)
    k = 2
    pairs = []
    for _ in range(6):
        x = np.cumsum(_ar1(rng, 80))  # an autocorrelated, trending "LLC"
        y = np.concatenate([np.zeros(k), x[:-k]]) + np.cumsum(0.3 * rng.normal(size=80))
        pairs.append((x, y))
    res = leadlag.pooled_ccf(pairs, max_lag=4)
    assert res["best_lag"] == k and k in res["significant_lags"]
    assert res["best_lag_ci"][0] <= k <= res["best_lag_ci"][1]
    assert -k not in res["significant_lags"]


def test_independent_random_walks_show_no_lead_after_correction():
    """Raw correlations of random walks are large; the pre-whitened, Holm-corrected test rarely fires."""
    rng = np.random.default_rng(3)
    fired, raw_large = 0, 0
    trials = 40
    for _ in range(trials):
        pairs = [(np.cumsum(rng.normal(size=60)), np.cumsum(rng.normal(size=60))) for _ in range(4)]
        raw_large += abs(np.corrcoef(*pairs[0])[0, 1]) > 0.5
        fired += bool(leadlag.pooled_ccf(pairs, max_lag=3, n_boot=50)["significant_lags"])
    assert fired <= 0.15 * trials
    assert raw_large >= 0.2 * trials  # what the old, uncorrected test was fooled by


def test_single_pair_ccf_and_leave_one_out():
    rng = np.random.default_rng(4)
    x = np.cumsum(rng.normal(size=50))
    y = np.cumsum(rng.normal(size=50))
    res = leadlag.prewhitened_ccf(x, y, 3)
    assert len(res["r"]) == 7 and all(0 <= p <= 1 for p in res["p_holm"])
    a = rng.normal(size=20)
    b = rng.normal(size=20)
    a[0], b[0] = 20.0, 20.0  # one point makes the correlation
    loo = correlation.leave_one_out(a, b)
    assert loo["r"] > 0.8 and loo["r_min"] < 0.5


@pytest.mark.parametrize("sign", [1, -1])
def test_spearman_interval(sign):
    rng = np.random.default_rng(5)
    x = rng.normal(size=20)
    y = sign * x + 0.1 * rng.normal(size=20)
    res = correlation.spearman_ci(x, y)
    assert sign * res["rho"] > 0.9 and (res["ci"][0] > 0 if sign > 0 else res["ci"][1] < 0)
    assert correlation.spearman_ci([1, 2, math.nan], [1, 2, 3])["n"] == 2


def test_event_steps_interpolate_between_checkpoints():
    steps = np.geomspace(10, 10000, 25)
    centre = 700.0
    y = np.exp(-0.5 * ((np.log(steps) - np.log(centre)) / 0.6) ** 2) + 0.05
    ev = leadlag.event_steps(steps, y, smooth=1)
    grid = steps[int(np.argmax(y))]
    assert abs(np.log(ev["peak"] / centre)) < abs(np.log(grid / centre)) + 1e-9
    assert abs(np.log(ev["peak"] / centre)) < 0.05
    assert ev["turn"] == ev["peak"] and ev["half_decline"] > ev["peak"]
    assert leadlag.event_steps(steps, np.linspace(0, 1, 25))["turn"] is None


def test_stratified_spearman_sees_within_group_order_only():
    rng = np.random.default_rng(6)
    strata = np.repeat([1, 2, 3, 4], 5)
    level = strata * 10.0
    noise = rng.normal(size=20)
    y = level + noise
    within = correlation.stratified_spearman(noise, y, strata, n_perm=2000)  # ranks inside each group: rho 1
    assert within["rho"] > 0.9 and within["p"] < 0.01 and within["ci"][0] > 0.5
    between = correlation.stratified_spearman(level + rng.normal(size=20) * 1e-3, y, strata, n_perm=2000)
    assert abs(between["rho"]) < 0.8 and between["p"] > 0.01  # only the between-group order: nothing within
    assert correlation.spearman_ci(level, y)["rho"] > 0.9
