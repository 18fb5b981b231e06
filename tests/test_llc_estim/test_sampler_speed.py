"""The sampler's speed paths keep its numbers: noise blocks, deferred NaN checks, fast collation, flat views."""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset, default_collate

from llc_estim import SGLDConfig, SGLDDivergenceError, auto_llc, estimate_llc, sampler
from llc_estim.params import FlatParams, materialise
from llc_estim.auto import AutoSettings
from llc_estim.curvature import Curvature
from llc_estim.precondition import DiagonalPreconditioner, curvature_preconditioner
from tests.test_llc_estim.models import linear_regression, mse


def test_memory_capped_noise_blocks_are_each_chains_own_stream(monkeypatch):
    """With blocks capped at 3 iterations, iteration t of chain c is row t % 3 of its (t // 3)-th draw."""
    model, data = linear_regression(5, 40)
    cfg = SGLDConfig(step_size=1e-3, num_chains=2, num_draws=7, num_burnin=0, progress=False)
    monkeypatch.setattr(sampler, "NOISE_BLOCK_BYTES", 3 * 2 * 5 * 8)
    run = sampler.ChainRun(model, data, mse, cfg, None)
    run.total = 7
    gens = [sampler.noise_generator(c) for c in sampler.chain_seeds(0, 2)]
    got = torch.stack([run.noise(gens, t) for t in range(7)])  # [7, C, P]
    for c, child in enumerate(sampler.chain_seeds(0, 2)):
        g = sampler.noise_generator(child)
        want = torch.cat([torch.randn(k, 5, generator=g, dtype=torch.float64) for k in (3, 3, 1)])
        torch.testing.assert_close(got[:, c], want, rtol=0, atol=0)


def test_nan_found_after_the_first_block_names_its_chain_and_iteration():
    model, data = linear_regression(2, 20)
    calls = [0]

    def late_nan(m, batch):
        out = mse(m, batch)
        calls[0] += 1
        return out * float("nan") if calls[0] > 71 else out  # 1 call for L(w*), then one per iteration

    with pytest.raises(SGLDDivergenceError, match="chain 0 at iteration 70"):
        estimate_llc(model, data, late_nan, SGLDConfig(step_size=1e-4, num_draws=100, mala_every=0, progress=False))


def test_fast_collation_equals_default_collate():
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.arange(6)
    data = TensorDataset(x, y)
    fast, slow = materialise(data), default_collate([data[i] for i in range(6)])
    assert type(fast) is type(slow) and all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(fast, slow))
    assert fast[0].data_ptr() != x.data_ptr()  # a copy, as collation makes


def test_split_view_gradients_match_slices():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    flat = FlatParams(model)
    w = (flat.w_star + 0.1).requires_grad_(True)
    x = torch.randn(5, 3, dtype=torch.float64)
    (g_split,) = torch.autograd.grad(flat.model_at(w)(x).pow(2).sum(), w)
    parts = {k: w[flat.offsets[i]:flat.offsets[i + 1]].reshape(s) for i, (k, s) in enumerate(flat.shapes)}
    (g_slice,) = torch.autograd.grad(torch.func.functional_call(model, parts, (x,)).pow(2).sum(), w)
    assert torch.equal(g_split, g_slice)
    np.testing.assert_array_equal(flat.unflatten(w.detach())["0.weight"].numpy(), model[0].weight.detach().numpy() + 0.1)


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()


@pytest.mark.parametrize("kind", ["sgld_minibatch", "mala_full_batch_filtered", "hmc_preconditioned"])
def test_compiled_loss_and_gradient_agree_with_eager_on_a_second_model(kind):
    """`compile=True` gives the eager chains to rounding, also for a second model of the same structure (the compiled
    code is reused: were its weights baked in as constants, the second model's chains would follow the first's).
    Fails if the compiled gradient is wrong, stale, or its guards are skipped on inputs that changed shape."""
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    data = TensorDataset(x, torch.sin(x.sum(1, keepdim=True)))
    if kind == "sgld_minibatch":
        kw = dict(step_size=1e-3, batch_size=8, mala_every=5)
    elif kind == "mala_full_batch_filtered":
        kw = dict(step_size=1e-4, metropolis=True, param_filter=["2.weight", "2.bias", "0.bias"])
    else:
        scale = torch.linspace(0.5, 2.0, 31, dtype=torch.float64) * 1e-2
        kw = dict(step_size=1e-2, metropolis=True, leapfrog_steps=3, preconditioner=DiagonalPreconditioner(scale))
    results = {}
    for seed in (0, 1):
        model = _mlp(seed)
        for compile in (False, True):
            cfg = SGLDConfig(nbeta=50.0, num_chains=3, num_draws=20, num_burnin=5, progress=False, compile=compile, **kw)
            results[seed, compile] = estimate_llc(model, data, mse, cfg)
    for seed in (0, 1):
        eager, fast = results[seed, False], results[seed, True]
        np.testing.assert_allclose(fast.loss_trace, eager.loss_trace, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(fast.acceptance_trace, eager.acceptance_trace, rtol=1e-8, atol=1e-12)
    assert not np.allclose(results[0, True].loss_trace, results[1, True].loss_trace)


def test_auto_llc_compiled_agrees_with_eager_after_it_tunes_the_step_size():
    """auto_llc builds its run with step size 1 and tunes it before the draws; the compiled path must use the tuned
    one (a stale step size gives other chains). Without preconditioner refreshes the two paths agree to rounding;
    with them they need not: the first-step search of each refresh halves or doubles on a mean acceptance compared
    with 0.5, so a rounding-level difference can move the tuned step by a factor of two (both runs are valid)."""
    x = torch.randn(60, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    data = TensorDataset(x, torch.sin(x.sum(1, keepdim=True)))
    out = [auto_llc(_mlp(0), data, mse, localization=100.0, nbeta=200.0, num_chains=2, max_steps=400, seed=3,
                    progress=False, compile=c, settings=AutoSettings(refreshes=0)) for c in (False, True)]
    assert out[0].choices["step_size"] != 1.0
    np.testing.assert_allclose(out[1].choices["step_size"], out[0].choices["step_size"], rtol=1e-8)
    np.testing.assert_allclose(out[1].loss_trace, out[0].loss_trace, rtol=1e-8, atol=1e-12)


def test_compiled_potential_follows_a_swapped_preconditioner():
    """auto_llc replaces the run's preconditioner after warm-up; with guards skipped within a run, the compiled
    potential would keep the old one unless the swap brings the guards back."""
    x = torch.randn(60, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    data = TensorDataset(x, torch.sin(x.sum(1, keepdim=True)))
    q = torch.linalg.qr(torch.randn(31, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).Q
    # low rank + isotropic: its isotropic scale c is a Python float, which the compiled code bakes in
    first, second = (curvature_preconditioner(Curvature(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64), q,
                                                        31, "dense"), 10.0, gamma) for gamma in (100.0, 300.0))
    z = 0.1 * torch.randn(2, 31, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    drifts = {}
    for compile in (False, True):
        cfg = SGLDConfig(step_size=1e-2, nbeta=50.0, num_chains=2, metropolis=True, preconditioner=first,
                         progress=False, compile=compile)
        run = sampler.ChainRun(_mlp(0), data, mse, cfg, None)
        before = [run.potential(z, run.full)[1] for _ in range(2)]  # the second call skips the guards
        run.precond = second
        drifts[compile] = before + [run.potential(z, run.full)[1] for _ in range(2)]
    for eager, fast in zip(drifts[False], drifts[True]):
        torch.testing.assert_close(fast, eager, rtol=1e-10, atol=1e-13)
    assert not torch.allclose(drifts[True][1], drifts[True][2])
