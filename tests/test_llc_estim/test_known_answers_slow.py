"""Slow tier (`make test-slow`): known-answer LLCs from the reference, with tolerances justified per test."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from llc_estim import SGLDConfig, auto_llc, estimate_llc
from tests.test_llc_estim.models import dln_task, half_sq_error, linear_regression, mse

pytestmark = pytest.mark.slow


def test_linear_regression_d10_llc_is_5():
    """Regular model, lambda = d/2 = 5. Full batch; gamma = 1 biases by -gamma/(nbeta*curvature) ~ -0.3%.
    Tolerance 10%: the chain-mean's standard error at these lengths is about 3% (measured spread across chains)."""
    model, data = linear_regression(10, 2000, seed=1)
    cfg = SGLDConfig(step_size=2e-5, localization=1.0, num_chains=4, num_draws=5000, num_burnin=2000,
                     progress=False)
    res = estimate_llc(model, data, mse, cfg)
    assert res.llc_mean == pytest.approx(5.0, rel=0.10), res.llc_per_chain


class Crossing(nn.Module):
    """y = w1 * w2 * x: at w = 0 the loss is the normal crossing K ~ (w1 w2)^2, lambda = 1/2 (multiplicity 2)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2, dtype=torch.float64))

    def forward(self, x):
        return self.w[0] * self.w[1] * x


def test_normal_crossing_llc_is_one_half():
    """Multiplicity 2 adds a log log n correction at finite n, so the tolerance is wider: 0.5 +- 0.2
    (devinterp's own test accepts 3.5 sigma around 0.5)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 1, generator=g, dtype=torch.float64)
    y = torch.randn(5000, 1, generator=g, dtype=torch.float64)  # true coefficient 0
    cfg = SGLDConfig(step_size=1e-3, localization=1.0, num_chains=8, num_draws=5000, num_burnin=1000,
                     progress=False)
    res = estimate_llc(Crossing(), TensorDataset(x, y), mse, cfg)
    assert 0.3 < res.llc_mean < 0.7, res.llc_per_chain


def test_nbeta_sweep_at_a_fixed_loss():
    """A true LLC does not scale with nbeta once nbeta * curvature >> gamma: linear regression d = 4 (lambda = 2)
    at nbeta = 300, 3000 and 30000 with the same loss. (The loss-rescaling check it replaces cannot fail: loss x c
    with nbeta / c gives identical dynamics.) On compiled models the old calibrated SGLD failed this check:
    histogram went 80.6 -> 770.5 under nbeta x 10, i.e. it measured nbeta times the loss of a broken model."""
    model, data = linear_regression(4, 2000, seed=2)
    values = []
    for nbeta in (300.0, 3000.0, 30000.0):
        res = auto_llc(model, data, mse, localization=1.0, nbeta=nbeta, max_steps=3000, progress=False)
        assert res.trustworthy, res.diagnostics["warnings"]
        values.append(res.llc_mean)
    assert max(values) / min(values) < 1.2, values
    assert all(v == pytest.approx(2.0, rel=0.15) for v in values), values


def test_reduced_rank_regression_5_3_5_rank0_is_6_5():
    """Aoyagi & Watanabe: (M, H, N) = (5, 3, 5), r = 0 -> 6.5, sampled at the origin. Measured here -2%;
    tolerance 20% (devinterp's own RRR test accepts 40%): the origin is very flat, so equilibration is slow."""
    model, data = dln_task([5, 3, 5], 0, 20000)
    cfg = SGLDConfig(step_size=1e-4, localization=1.0, num_chains=4, num_draws=4000, num_burnin=2000,
                     batch_size=500, progress=False)
    res = estimate_llc(model, data, half_sq_error, cfg)
    assert res.llc_mean == pytest.approx(6.5, rel=0.2), res.llc_per_chain


def test_deep_linear_network_10_10_10_rank5_is_47():
    """Aoyagi 2024: widths [10, 10, 10], r = 5 -> 47 (d/2 would be 100). Measured here -4.5%; tolerance 15%
    (Furman & Lau report -2.4% to +9.5% on small DLNs)."""
    model, data = dln_task([10, 10, 10], 5, 20000)
    cfg = SGLDConfig(step_size=1e-5, localization=1.0, num_chains=4, num_draws=4000, num_burnin=2000,
                     batch_size=500, progress=False)
    res = estimate_llc(model, data, half_sq_error, cfg)
    assert res.llc_mean == pytest.approx(47, rel=0.15), res.llc_per_chain


def test_agrees_with_devinterp_1_3_2():
    """Same model, data and hyperparameters (nbeta fixed, same init loss): the two means differ by less than
    three combined standard errors of the chain means."""
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from torch.utils.data import DataLoader

    model, data = dln_task([5, 3, 5], 0, 5000)
    chains, draws, burnin, eps, nbeta = 8, 1500, 500, 1e-4, 500.0
    ours = estimate_llc(model, data, half_sq_error, SGLDConfig(
        step_size=eps, localization=1.0, nbeta=nbeta, num_chains=chains, num_draws=draws, num_burnin=burnin,
        batch_size=100, mala_every=0, progress=False))
    theirs = estimate_learning_coeff_with_summary(
        model, loader=DataLoader(data, batch_size=100, shuffle=True), evaluate=half_sq_error, sampling_method=SGLD,
        optimizer_kwargs=dict(lr=eps, localization=1.0, nbeta=nbeta), num_chains=chains, num_draws=draws,
        num_burnin_steps=burnin, num_steps_bw_draws=1, init_loss=ours.init_loss, seed=0, device="cpu",
        online=False, verbose=False)
    se = ((ours.llc_std ** 2 + float(theirs["llc/std"]) ** 2) / chains) ** 0.5
    assert abs(ours.llc_mean - float(theirs["llc/mean"])) < 3 * se + 1e-9, (ours.llc_mean, theirs["llc/mean"], se)


def _noiseless_dln(scale: float):
    """DLN [10, 10, 10], teacher rank 5, labels without noise (so w* is an exact minimum of L_n), after the
    function-preserving rescaling W1 x scale, W2 / scale."""
    model, data = dln_task([10, 10, 10], 5, 2000)
    x, _ = data.tensors
    with torch.no_grad():
        y = model(x)
        model.ws[0].mul_(scale)
        model.ws[1].div_(scale)
    return model, TensorDataset(x, y)


def test_auto_llc_deep_linear_network_after_rescaling_is_47():
    """The stiff known answer: W1 x 10, W2 / 10 leaves lambda = 47 unchanged (Aoyagi 2024), but makes the
    posterior 100x anisotropic. Plain calibrated SGLD gives -30% here. auto_llc, nbeta = 1e5 (the posterior must be
    cold enough for the log-corrections of a multiplicity-2 singularity to fade). Measured 45.4 (-3.5%) in one run,
    but 40.4 at 8000 steps and 42.2 at 20000 in the latest (flagged by auto_llc itself: below 0.85 x the effective
    half-rank, R-hat 1.16): this known answer is not reliably met; the test records the criterion."""
    model, data = _noiseless_dln(10.0)
    res = auto_llc(model, data, half_sq_error, localization=1.0, nbeta=1e5, max_steps=8000, progress=False)
    assert res.llc_mean == pytest.approx(47, rel=0.10), (res.llc_per_chain, res.diagnostics["warnings"])


def test_auto_llc_easy_known_answers():
    """The easy ones through auto_llc too: linear regression d = 10 (lambda = 5) and RRR (5, 3, 5) at the origin
    (lambda = 6.5), within 10%."""
    model, data = linear_regression(10, 2000, seed=1)
    res = auto_llc(model, data, mse, localization=1.0, max_steps=3000, progress=False)
    assert res.llc_mean == pytest.approx(5.0, rel=0.10), res.llc_per_chain
    model, data = dln_task([5, 3, 5], 0, 2000)
    x, _ = data.tensors
    rrr = TensorDataset(x, torch.zeros(len(x), 5, dtype=torch.float64))  # noiseless: the origin is an exact minimum
    res = auto_llc(model, rrr, half_sq_error, localization=1.0, nbeta=1e5, max_steps=8000, progress=False)
    assert res.llc_mean == pytest.approx(6.5, rel=0.10), res.llc_per_chain
