"""SGLD chain-steps per second: our vectorised sampler vs devinterp 1.3.2, same model, data and settings.

Prints ratios measured in this process. Model: a small MLP regression (overhead-bound) and compiled fractok.
"""

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from llc_estim import SGLDConfig, estimate_llc


def _mlp_task(n=1024, d=8, h=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    model = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, 1)).double()
    return model, TensorDataset(x, y)


def _ours(model, data, chains, steps):
    cfg = SGLDConfig(step_size=1e-5, localization=1.0, nbeta=100.0, num_chains=chains, num_draws=steps,
                     num_burnin=0, batch_size=64, mala_every=0, progress=False)
    loss = lambda m, b: ((m(b[0]) - b[1]) ** 2).mean()  # noqa: E731
    t0 = time.perf_counter()
    estimate_llc(model, data, loss, cfg)
    return chains * steps / (time.perf_counter() - t0)


def _devinterp(model, data, chains, steps):
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    loader = DataLoader(data, batch_size=64, shuffle=True)
    t0 = time.perf_counter()
    estimate_learning_coeff_with_summary(
        model, loader=loader, evaluate=lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), sampling_method=SGLD,
        optimizer_kwargs=dict(lr=1e-5, localization=1.0, nbeta=100.0), num_chains=chains, num_draws=steps,
        num_burnin_steps=0, num_steps_bw_draws=1, device="cpu", online=False, verbose=False)
    return chains * steps / (time.perf_counter() - t0)


def main() -> None:
    torch.set_num_threads(1)
    model, data = _mlp_task()
    print(f"small MLP ({sum(p.numel() for p in model.parameters())} params), float64, batch 64, 1 thread")
    print(f"{'chains':>6s} {'ours steps/s':>13s} {'devinterp steps/s':>18s} {'ratio':>6s}")
    for chains in (1, 4, 8):
        ours = _ours(model, data, chains, 300)
        try:
            ref = _devinterp(model, data, chains, 300)
        except Exception as e:  # devinterp API drift: report instead of hiding
            print(f"devinterp failed: {e!r}")
            ref = float("nan")
        print(f"{chains:6d} {ours:13.1f} {ref:18.1f} {ours / ref:6.2f}")


if __name__ == "__main__":
    main()
