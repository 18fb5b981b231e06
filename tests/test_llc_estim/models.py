"""Known-answer models for the estimator (data generated here, no downloads)."""

import torch
from torch import nn
from torch.utils.data import TensorDataset


class Linear(nn.Module):
    def __init__(self, d_in: int, d_out: int = 1):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(d_in, d_out, dtype=torch.float64))

    def forward(self, x):
        return x @ self.w


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def linear_regression(d: int, n: int, seed: int = 0):
    """A least-squares fit: w* is the exact minimiser of the empirical loss, lambda = d/2."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_true = torch.randn(d, 1, generator=g, dtype=torch.float64)
    y = x @ w_true + torch.randn(n, 1, generator=g, dtype=torch.float64)
    model = Linear(d)
    with torch.no_grad():
        model.w.copy_(torch.linalg.lstsq(x, y).solution)
    return model, TensorDataset(x, y)


class DLN(nn.Module):
    """Deep linear network x -> x W_1 ... W_L."""

    def __init__(self, widths):
        super().__init__()
        self.ws = nn.ParameterList(nn.Parameter(torch.zeros(a, b, dtype=torch.float64))
                                   for a, b in zip(widths, widths[1:]))

    def forward(self, x):
        for w in self.ws:
            x = x @ w
        return x


def half_sq_error(model, batch):
    """Gaussian negative log-likelihood up to a constant: 0.5 |y - f(x)|^2, mean over examples."""
    x, y = batch
    return 0.5 * ((model(x) - y) ** 2).sum(-1).mean()


def dln_task(widths, rank: int, n: int, seed: int = 0):
    """Teacher = student at w*: a DLN whose first layer has rank `rank` (rank 0: all weights zero)."""
    g = torch.Generator().manual_seed(seed)
    model = DLN(widths)
    with torch.no_grad():
        for i, w in enumerate(model.ws):
            a = torch.randn(w.shape, generator=g, dtype=torch.float64) / w.shape[0] ** 0.5
            if i == 0:
                a[:, rank:] = 0
            w.copy_(a if rank > 0 else torch.zeros_like(a))
    x = torch.randn(n, widths[0], generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x) + torch.randn(n, widths[-1], generator=g, dtype=torch.float64)
    return model, TensorDataset(x, y)
