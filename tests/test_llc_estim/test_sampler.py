"""Fast tests of the SGLD sampler and the LLC estimator."""

import math

import numpy as np
import pytest
import torch

from llc_estim import SGLDConfig, SGLDDivergenceError, estimate_llc
from llc_estim import sampler
from llc_estim.diagnostics import split_rhat
from tests.test_llc_estim.models import linear_regression, mse


def test_noise_off_step_is_gradient_descent():
    """With localization 0 and the noise removed, one step is GD with step eps*nbeta/2."""
    model, data = linear_regression(3, 50)
    with torch.no_grad():
        model.w.add_(0.3)
    w0 = model.w.detach().clone()
    cfg = SGLDConfig(step_size=1e-3, localization=0.0, nbeta=10.0, num_chains=1, num_draws=2, num_burnin=0,
                     mala_every=0, progress=False)
    res = estimate_llc(model, data, mse, cfg)
    x, y = data.tensors
    w = w0.clone().requires_grad_(True)
    ((x @ w - y) ** 2).mean().backward()
    w1 = w0 - 0.5 * 1e-3 * 10.0 * w.grad
    # the second recorded loss is at w1 plus the first noise draw of chain 0's own generator
    gen = sampler.noise_generator(sampler.chain_seeds(0, 1)[0])
    noise = torch.randn(2, 3, generator=gen, dtype=torch.float64)[0].view(3, 1)  # the block of 2 iterations, row 0
    expected_loss = float(((x @ (w1 + math.sqrt(1e-3) * noise) - y) ** 2).mean())
    assert res.loss_trace[0, 0] == pytest.approx(float(((x @ w0 - y) ** 2).mean()), rel=1e-12)
    assert res.loss_trace[0, 1] == pytest.approx(expected_loss, rel=1e-10)


def test_estimator_identity_and_parameters_unchanged():
    model, data = linear_regression(4, 200)
    before = model.w.detach().clone()
    cfg = SGLDConfig(step_size=1e-4, num_chains=3, num_draws=50, num_burnin=10, batch_size=32, progress=False)
    res = estimate_llc(model, data, mse, cfg)
    assert torch.equal(model.w, before)
    assert res.loss_trace.shape == (3, 50) and res.burnin_trace.shape == (3, 10)
    np.testing.assert_array_equal(res.llc_per_chain, res.nbeta * (res.loss_trace.mean(1) - res.init_loss))
    assert res.nbeta == pytest.approx(200 / math.log(200))
    assert res.init_loss == pytest.approx(float(mse(model, data.tensors)), rel=1e-12)
    assert res.to_dict()["llc/mean"] == res.llc_mean


def test_same_seed_same_numbers_different_seed_different_chains():
    model, data = linear_regression(4, 100)
    cfg = SGLDConfig(step_size=1e-4, num_chains=2, num_draws=20, num_burnin=5, batch_size=16, progress=False)
    a, b = estimate_llc(model, data, mse, cfg), estimate_llc(model, data, mse, cfg)
    np.testing.assert_array_equal(a.loss_trace, b.loss_trace)
    assert not np.array_equal(a.loss_trace[0], a.loss_trace[1])
    c = estimate_llc(model, data, mse, SGLDConfig(**{**cfg.__dict__, "seed": 1}))
    assert not np.array_equal(a.loss_trace, c.loss_trace)


def test_nan_loss_raises_divergence_naming_chain_and_step():
    model, data = linear_regression(2, 20)

    def bad_loss(m, batch):
        out = mse(m, batch)
        return out / 0.0 * 0.0  # NaN

    with pytest.raises(SGLDDivergenceError, match="chain 0 at iteration 0"):
        estimate_llc(model, data, bad_loss, SGLDConfig(step_size=1e-4, num_draws=5, progress=False))


def test_huge_step_size_diverges_with_clear_error():
    model, data = linear_regression(2, 50)
    with pytest.raises(SGLDDivergenceError, match="localization term alone is unstable, so reduce step_size"):
        estimate_llc(model, data, mse, SGLDConfig(step_size=10.0, nbeta=1e3, num_draws=500, progress=False))


def test_param_filter_freezes_the_rest():
    model, data = linear_regression(3, 50)
    model.b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    res = estimate_llc(model, data, mse, SGLDConfig(step_size=1e-4, num_draws=5, param_filter=["w"],
                                                    progress=False))
    assert res.param_names == ["w"] and res.num_sampled_params == 3
    with pytest.raises(ValueError, match="unknown"):
        estimate_llc(model, data, mse, SGLDConfig(step_size=1e-4, num_draws=5, param_filter=["nope"]))


def test_linear_regression_d4_llc_is_2():
    """Regular model: lambda = d/2 = 2. Full batch, so the only error is the chains' finite length (~0.3)."""
    model, data = linear_regression(4, 1000)
    cfg = SGLDConfig(step_size=3e-5, localization=1.0, num_chains=4, num_draws=3000, num_burnin=1000,
                     progress=False)
    res = estimate_llc(model, data, mse, cfg)
    assert 1.4 < res.llc_mean < 2.6, res.llc_per_chain
    assert res.diagnostics["mala_acceptance"] > 0.9
    assert res.diagnostics["frac_below_init_loss"] < 0.05


def test_split_rhat():
    rng = np.random.default_rng(0)
    assert split_rhat(rng.normal(size=(4, 1000))) == pytest.approx(1.0, abs=0.02)
    assert split_rhat(rng.normal(size=(4, 1000)) + np.arange(4)[:, None]) > 1.5


def test_calibrate_recommends_a_stable_step_and_plots(tmp_path):
    from llc_estim import calibrate
    from llc_estim.plotting import plot_loss_traces

    model, data = linear_regression(4, 300)
    base = SGLDConfig(step_size=1e-5, num_chains=2, num_draws=200, num_burnin=100, progress=False)
    cal = calibrate(model, data, mse, base, step_sizes=[1e-6, 1e-5, 1e-4, 1e-1])
    assert len(cal.table) == 4
    assert cal.table[-1]["diverged"]  # 1e-1 * nbeta * curvature >> 1
    assert cal.recommended is not None and cal.recommended.step_size < 1e-1
    cal.figure().savefig(tmp_path / "cal.png")
    res = estimate_llc(model, data, mse, cal.recommended)
    plot_loss_traces(res, "lin-reg").savefig(tmp_path / "trace.png")
    assert (tmp_path / "cal.png").stat().st_size > 0


def test_param_masks_freeze_entries():
    """The loss depends only on w[1]; with w[1] frozen, every draw equals L(w*) exactly."""
    model, data = linear_regression(3, 50)
    x, y = data.tensors
    x = x.clone()
    x[:, 0] = 0
    x[:, 2] = 0
    data = torch.utils.data.TensorDataset(x, y)
    mask = torch.tensor([[True], [False], [True]])
    cfg = SGLDConfig(step_size=1e-3, num_draws=20, num_chains=2, param_masks={"w": mask}, progress=False)
    res = estimate_llc(model, data, mse, cfg)
    assert res.num_sampled_params == 2
    np.testing.assert_allclose(res.loss_trace, res.init_loss, rtol=0, atol=1e-12)
    unmasked = estimate_llc(model, data, mse, SGLDConfig(**{**cfg.__dict__, "param_masks": None}))
    assert np.abs(unmasked.loss_trace - unmasked.init_loss).max() > 1e-6
    with pytest.raises(ValueError, match="shape"):
        estimate_llc(model, data, mse, SGLDConfig(step_size=1e-3, num_draws=2, param_masks={"w": torch.ones(2)}))
    assert res.to_dict()["config/param_masks"] == {"w": 2}


def test_diagnostic_plot_shades_burn_in_and_shows_acceptance(tmp_path):
    """Per-chain traces with the burn-in shaded, a running-acceptance panel for Metropolis runs, verdict in title."""
    from llc_estim.plotting import plot_loss_traces

    model, data = linear_regression(4, 300)
    res = estimate_llc(model, data, mse, SGLDConfig(step_size=1e-4, num_chains=2, num_draws=60, num_burnin=20,
                                                    metropolis=True, progress=False))
    fig = plot_loss_traces(res, "lin-reg")
    loss_ax, acc_ax = fig.axes[:2]
    assert any(p.get_label() == "burn-in" for p in loss_ax.patches)
    assert len(acc_ax.lines) == 2 and acc_ax.get_ylabel() == "running acceptance"
    assert "LLC =" in fig._suptitle.get_text()
    fig.savefig(tmp_path / "trace.png")


def test_trace_record_is_json_thinned_and_plots_in_a_grid(tmp_path):
    """A study keeps a thinned, JSON-friendly record of each estimate and draws it later: the thinned loss matches
    the result's every `stride`-th iteration, the burn-in length survives, and the grid shades it per panel."""
    import json

    from llc_estim.plotting import plot_trace_grid, trace_record

    model, data = linear_regression(4, 300)
    res = estimate_llc(model, data, mse, SGLDConfig(step_size=1e-4, num_chains=2, num_draws=290, num_burnin=110,
                                                    metropolis=True, progress=False))
    rec = json.loads(json.dumps(trace_record(res, max_points=50)))
    full = np.concatenate([res.burnin_trace, res.loss_trace], axis=1)
    assert rec["stride"] == 8 and rec["burnin"] == 110
    np.testing.assert_allclose(rec["loss"], full[:, ::8])
    assert len(rec["acceptance"]) == 2 and len(rec["acceptance"][0]) <= 50
    assert rec["llc_mean"] == pytest.approx(res.llc_mean)
    fig = plot_trace_grid([rec, rec], ["a", "b"], "lin-reg, n=300", ncols=3)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2 and all(any(p.get_label() == "burn-in" for p in ax.patches) for ax in panels)
    fig.savefig(tmp_path / "grid.png")
    # the panels draw L(w) - L(w*): readable even where L(w*) dwarfs the fluctuations (no offset-text clash)
    chain0 = next(ln for ln in panels[0].lines if ln.get_label() == "chain 0")
    np.testing.assert_allclose(chain0.get_ydata(), np.asarray(rec["loss"][0]) - rec["init_loss"])
    # a tall grid's panels sit below its suptitle (a plain tight_layout let the first row's titles overlap it)
    tall = plot_trace_grid([rec] * 24, [f"panel {i}" for i in range(24)], "lin-reg, n=300", ncols=4)
    tall.canvas.draw()
    title_bottom = tall._suptitle.get_window_extent().y0
    assert all(ax.title.get_window_extent().y1 <= title_bottom for ax in tall.axes if ax.get_title())
    with pytest.raises(ValueError):
        plot_trace_grid([], [], "empty")
    # SGLD's MALA probe runs every `mala_every` iterations: its acceptance is placed at those iterations
    probe = estimate_llc(model, data, mse, SGLDConfig(step_size=1e-4, num_chains=2, num_draws=100, num_burnin=20,
                                                      mala_every=5, progress=False))
    rec = trace_record(probe)
    assert len(rec["acceptance"][0]) == 24 and rec["acceptance_stride"] == 5  # tests at 0, 5, ..., 115
    xs = plot_trace_grid([rec], ["sgld"], "probe").axes
    acc_lines = [ln for ax in xs for ln in ax.lines if ln.get_linestyle() == "--"]
    assert acc_lines and max(acc_lines[0].get_xdata()) == 115
