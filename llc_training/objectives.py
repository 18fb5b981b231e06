"""The losses a trained model's LLC is measured under, and the check that its weights are a minimum of them.

Training with Adam and L2 weight decay `wd` seeks a stationary point of the regularised loss
L(w) + (wd / 2) |w|^2. `regularised` builds that loss for the estimator (the model wrapped in `WithSquaredNorm`,
because the estimator substitutes parameters only in calls), `outputs_only` and `unregularised` give the task
outputs and loss alone, `grad_norm` measures how close the weights are to a minimum, `polish` finishes training with
full-batch L-BFGS, and `hutchinson_trace` and `weight_norm` describe the minimum reached.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

Batch = tuple


class WithSquaredNorm(nn.Module):
    """`forward(*args) -> (inner(*args), sum of the squares of all inner parameters)`.

    The estimator substitutes parameters only in calls (`torch.func.functional_call`), so a loss that needs |w|^2
    must get it from the forward pass; `regularised` unpacks it.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args):
        return self.inner(*args), sum((p ** 2).sum() for p in self.inner.parameters())


def regularised(task_loss: Callable, weight_decay: float) -> Callable:
    """loss_fn(wrapped, batch) = task_loss + (weight_decay / 2) |w|^2 for a `WithSquaredNorm` model: the loss whose
    minimum Adam with L2 weight decay seeks."""

    def loss(model, batch):
        box = {}

        def call(*args):
            out, sq = model(*args)
            box["sq"] = sq
            return out

        value = task_loss(call, batch)
        return value + 0.5 * weight_decay * box["sq"]

    return loss


def outputs_only(model) -> Callable:
    """A callable giving a model's outputs alone: a `WithSquaredNorm` model's (outputs, |w|^2) is unpacked (for
    accuracies and unregularised task losses; works on the estimator's functional models too)."""

    def call(*args):
        out = model(*args)
        return out[0] if isinstance(out, tuple) else out

    return call


def unregularised(task_loss: Callable) -> Callable:
    """loss_fn(model, batch) = task_loss on the outputs alone (for a `WithSquaredNorm` model)."""
    return lambda model, batch: task_loss(outputs_only(model), batch)


def grad_norm(model: nn.Module, loss_fn: Callable, data: Batch) -> float:
    """Euclidean norm of the full-batch gradient of `loss_fn(model, data)` over all parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model, data), params)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


def polish(model: nn.Module, loss_fn: Callable, data: Batch, max_iter: int = 500, tol: float = 1e-9) -> dict:
    """Full-batch L-BFGS (strong Wolfe line search) on `loss_fn`, in place, until the gradient norm is below `tol`
    or `max_iter` iterations: the end of training, so the weights are a minimum of the loss the LLC uses.

    Returns {"grad_norm_before", "grad_norm_after", "loss_before", "loss_after", "iterations"}.
    """
    before = grad_norm(model, loss_fn, data)
    with torch.no_grad():
        loss0 = float(loss_fn(model, data))
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=1e-16, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss_fn(model, data)
        value.backward()
        return value

    opt.step(closure)
    with torch.no_grad():
        loss1 = float(loss_fn(model, data))
    return {"grad_norm_before": before, "grad_norm_after": grad_norm(model, loss_fn, data), "loss_before": loss0,
            "loss_after": loss1, "iterations": int(opt.state[opt._params[0]].get("n_iter", 0))}


def hutchinson_trace(model: nn.Module, loss_fn: Callable, data: Batch, probes: int = 64, seed: int = 0) -> dict:
    """Hutchinson estimate of the Hessian trace of `loss_fn` at the model's weights (Rademacher probes).

    Returns {"trace", "se" (standard error over probes), "probes"}.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(seed)
    loss = loss_fn(model, data)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    vals = []
    for _ in range(probes):
        vs = [(torch.randint(0, 2, p.shape, generator=g) * 2 - 1).to(p.dtype) for p in params]
        hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
        vals.append(float(sum((h * v).sum() for h, v in zip(hv, vs))))
    vals = np.asarray(vals)
    return {"trace": float(vals.mean()), "se": float(vals.std(ddof=1) / math.sqrt(len(vals))), "probes": probes}


def weight_norm(model: nn.Module) -> float:
    """|w|, the Euclidean norm of all parameters."""
    return float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.parameters())))
