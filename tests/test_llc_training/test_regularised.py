"""The regularised loss the trained models' LLC uses, its minimum, and the trained-model validity checks."""

import math

import numpy as np
import torch
from torch import nn

from llc_estim.params import FlatParams
from llc_training.model import ModAddMLP
from llc_training.objectives import (WithSquaredNorm, grad_norm, hutchinson_trace, outputs_only, polish, regularised,
                                     unregularised, weight_norm)
from llc_training.train import TrainConfig, classification_task, train
from llc_training.validity import TrainedLLCSettings, trained_llc


def _mod_data(p=7):
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], 1)
    return x, (x[:, 0] + x[:, 1]) % p


def test_regularised_loss_is_task_loss_plus_half_wd_norm_and_matches_adams_l2_gradient():
    task = classification_task()
    model = WithSquaredNorm(ModAddMLP(7, 4, 8, seed=0)).double()
    data = _mod_data()
    wd = 0.01
    reg = regularised(task.loss, wd)
    sq = sum((p.detach() ** 2).sum() for p in model.parameters())
    assert torch.isclose(reg(model, data), task.loss(outputs_only(model), data) + 0.5 * wd * sq)
    params = list(model.parameters())
    g_reg = torch.autograd.grad(reg(model, data), params)
    g_task = torch.autograd.grad(unregularised(task.loss)(model, data), params)
    for a, b, p in zip(g_reg, g_task, params):  # Adam's weight_decay adds wd * w to the gradient
        torch.testing.assert_close(a, b + wd * p.detach())


def test_the_estimator_sees_the_substituted_weights_in_the_regulariser():
    model = WithSquaredNorm(nn.Linear(3, 1)).double()
    flat = FlatParams(model)
    loss = regularised(lambda m, batch: (m(batch[0]) ** 2).mean() * 0, 2.0)
    batch = (torch.zeros(2, 3, dtype=torch.float64),)
    assert float(flat.loss(loss, flat.w_star * 0 + 1, batch)) == 4.0  # 4 weights of 1: (2/2) * 4


def test_trained_minimum_has_zero_gradient_after_polish():
    """Adam with L2 decay stops near, not at, the minimum; full-batch L-BFGS on the regularised loss finishes it."""
    task = classification_task()
    data = _mod_data()
    model = ModAddMLP(7, 4, 8, seed=0)
    train(model, task, data, data, TrainConfig(steps=300, batch_size=16, lr=1e-2, weight_decay=1e-3,
                                               checkpoints=(300,), optimizer="adam"), progress=False)
    wrapped = WithSquaredNorm(model).double()
    reg = regularised(task.loss, 1e-3)
    res = polish(wrapped, reg, data, max_iter=500)
    assert res["grad_norm_before"] > 1e-4
    assert res["grad_norm_after"] < 1e-6 and res["loss_after"] <= res["loss_before"]
    assert math.isclose(grad_norm(wrapped, reg, data), res["grad_norm_after"])
    assert weight_norm(wrapped) > 0


def test_hutchinson_trace_of_a_quadratic():
    torch.manual_seed(0)
    x = torch.randn(200, 4, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    loss = lambda m, batch: ((m(batch[0]) - batch[1]) ** 2).mean()  # noqa: E731
    exact = float(torch.trace(2 * x.T @ x / len(x)))
    est = hutchinson_trace(model, loss, (x, torch.zeros(200, 1, dtype=torch.float64)), probes=400)
    assert abs(est["trace"] - exact) < 4 * est["se"] + 1e-9


def test_trained_llc_of_a_regular_model_is_half_its_dimension():
    """Linear regression with d weights at its least-squares minimum: LLC d/2, and every check passes.

    2000 steps: at 600 (20 HMC draws per chain) the verdict hung on rounding; on this session's CPU the same seeds
    gave per-chain LLCs 1.9-5.7 and R-hat 1.58, at 2000 steps 2.02 +- 0.10."""
    torch.manual_seed(0)
    d = 4
    x = torch.randn(400, d - 1, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.3 + 0.1 * torch.randn(400, 1,
                                                                                               dtype=torch.float64)
    model = nn.Linear(d - 1, 1).double()

    class Task:  # accuracy: share of points predicted within 0.5
        @staticmethod
        def accuracy(m, batch):
            with torch.no_grad():
                return float(((m(batch[0]) - batch[1]).abs() < 0.5).double().mean())

    loss = lambda m, batch: ((m(batch[0]) - batch[1]) ** 2).mean()  # noqa: E731
    polish(model, loss, (x, y), max_iter=100)
    res = trained_llc(model, Task, (x, y), loss,
                      TrainedLLCSettings(localization=1e-2, nbeta=1e4, max_steps=2000, sgld_mode="whitened",
                                         sgld_step=0.1, sgld_draws=400, sgld_burnin=200, refreshes=0))
    assert abs(res["llc_mean"] - d / 2) < 0.3, res
    assert res["valid"], res["reasons"]
    assert res["grad_norm"] < 1e-6 and len(res["sgld"]) == 2
    assert np.isfinite(res["step_change"])
