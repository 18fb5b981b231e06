"""SGLD chain-steps per second: our vectorised sampler vs devinterp 1.3.2, same model, data and settings.

Everything is measured in this process, after a warm-up run of each sampler. Reported per model and chain count:
chain-steps/s for both samplers, their ratio, and our time per chain-step divided by the compute floor (one
forward+backward of one model copy on the same batch size).
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from llc_estim import SGLDConfig, estimate_llc

BATCH = 64


def _mlp_task(n=1024, d=8, h=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    model = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, 1)).double()
    return model, TensorDataset(x, y), lambda m, b: ((m(b[0]) - b[1]) ** 2).mean()


def _compiled_task(name: str, dtype=torch.float64):
    from datasets.teacher import teacher_problem
    from rasp_models import registry

    prob = teacher_problem(registry.get(name), 512, seed=0, dtype=dtype, dedup=False)
    return prob.model, prob.data, prob.loss_fn


def _ours(model, data, loss, chains, steps, eps):
    cfg = SGLDConfig(step_size=eps, localization=1.0, nbeta=100.0, num_chains=chains, num_draws=steps,
                     num_burnin=0, batch_size=BATCH, mala_every=0, progress=False, num_threads=None)
    t0 = time.perf_counter()
    estimate_llc(model, data, loss, cfg)
    return chains * steps / (time.perf_counter() - t0)


def _devinterp(model, data, loss, chains, steps, eps):
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    loader = DataLoader(data, batch_size=BATCH, shuffle=True)
    t0 = time.perf_counter()
    estimate_learning_coeff_with_summary(
        model, loader=loader, evaluate=loss, sampling_method=SGLD,
        optimizer_kwargs=dict(lr=eps, localization=1.0, nbeta=100.0), num_chains=chains, num_draws=steps,
        num_burnin_steps=0, num_steps_bw_draws=1, device="cpu", online=False, verbose=False)
    return chains * steps / (time.perf_counter() - t0)


def _floor(model, data, loss, reps=30) -> float:
    """Seconds for one forward+backward of one model copy on one batch."""
    batch = tuple(t[:BATCH] for t in data.tensors)
    for _ in range(3):
        model.zero_grad()
        loss(model, batch).backward()
    t0 = time.perf_counter()
    for _ in range(reps):
        model.zero_grad()
        loss(model, batch).backward()
    return (time.perf_counter() - t0) / reps


def bench(label, model, data, loss, steps, eps, threads, chain_counts=(1, 4, 8)):
    torch.set_num_threads(threads)
    floor = _floor(model, data, loss)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n{label}: {n_params} params, batch {BATCH}, {threads} thread(s); compute floor {floor * 1e3:.2f} ms")
    print(f"{'chains':>6s} {'ours/s':>9s} {'devinterp/s':>12s} {'ratio':>6s} {'ours/floor':>11s}")
    _ours(model, data, loss, 2, 5, eps)  # warm-up
    _devinterp(model, data, loss, 1, 5, eps)
    for chains in chain_counts:
        ours = _ours(model, data, loss, chains, steps, eps)
        ref = _devinterp(model, data, loss, chains, steps, eps)
        print(f"{chains:6d} {ours:9.1f} {ref:12.1f} {ours / ref:6.2f} {1 / ours / floor:11.2f}")


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    bench("small MLP, float64", *_mlp_task(), steps=300, eps=1e-5, threads=1)
    bench("compiled fractok, float64", *_compiled_task("fractok"), steps=60, eps=1e-6, threads=1)
    bench("compiled fractok, float32", *_compiled_task("fractok", torch.float32), steps=60, eps=1e-6, threads=1)
    bench("compiled palindrome, float64", *_compiled_task("palindrome"), steps=20, eps=1e-8, threads=2,
          chain_counts=(1, 8))


if __name__ == "__main__":
    main()
