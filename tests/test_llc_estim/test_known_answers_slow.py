"""Slow tier (`make test-slow`): known-answer LLCs from the reference, with tolerances justified per test."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from llc_estim import SGLDConfig, estimate_llc
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


def test_loss_rescaling_invariance():
    """Scaling the loss by c and nbeta by 1/c leaves the estimate unchanged (same seed: same noise)."""
    model, data = linear_regression(4, 500)
    base = dict(step_size=3e-5, localization=0.0, num_chains=2, num_draws=1000, num_burnin=300, progress=False)
    a = estimate_llc(model, data, mse, SGLDConfig(nbeta=100.0, **base))
    b = estimate_llc(model, data, lambda m, bt: 10.0 * mse(m, bt), SGLDConfig(nbeta=10.0, **base))
    assert b.llc_mean == pytest.approx(a.llc_mean, rel=1e-6)


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
