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
