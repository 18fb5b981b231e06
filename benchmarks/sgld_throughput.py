"""SGLD chain-steps per second: our vectorised sampler vs devinterp 1.3.2, same model, data and settings.

`python -m benchmarks.sgld_throughput [--reps N] [--chains 8 16]`. Everything runs in this process on one torch
thread: a warm-up run of each sampler, then `reps` interleaved runs of each (ours, devinterp, ours, ...), and the
median of each. Reported per model and chain count: chain-steps/s of both samplers, their ratio, and our time per
chain-step divided by the compute floor (one forward+backward of one model copy on the same batch). The last line
is a JSON record of the numbers.

Settings (both samplers): SGLD, minibatch 64 drawn per chain, nbeta = 100, gamma = 1, no burn-in, no MALA check,
no progress bar. Ours draws all chains at once (one vmapped forward+backward per step), devinterp one chain after
the other. Ours is timed twice: eager (the default) and with `compile=True` (the loss and gradient through
`torch.compile`; its one-off compilation happens in the warm-up and is reported as a time of its own).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from llc_estim import SGLDConfig, estimate_llc

BATCH = 64


def _mlp_task(n=1024, d=8, h=96, seed=0):
    """The 961-parameter MLP (8 -> 96 -> 1, float64) on 1024 points of y = sin(sum x)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, 1)).double()
    return model, TensorDataset(x, y), lambda m, b: ((m(b[0]) - b[1]) ** 2).mean()


def _compiled_task(name: str, dtype=torch.float64, n: int = 512):
    """A compiled program's teacher problem, one item per generated sequence (so batches match devinterp's)."""
    from datasets.teacher import teacher_problem
    from rasp_models import registry

    prob = teacher_problem(registry.get(name), n, seed=0, dtype=dtype, dedup=False)
    return prob.model, prob.data, prob.loss_fn


def _ours(model, data, loss, chains, steps, eps, compile=False) -> float:
    cfg = SGLDConfig(step_size=eps, localization=1.0, nbeta=100.0, num_chains=chains, num_draws=steps,
                     num_burnin=0, batch_size=BATCH, mala_every=0, progress=False, num_threads=None, compile=compile)
    t0 = time.perf_counter()
    estimate_llc(model, data, loss, cfg)
    return chains * steps / (time.perf_counter() - t0)


def _devinterp(model, data, loss, chains, steps, eps) -> float:
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


def bench(label, model, data, loss, steps, eps, chain_counts=(8,), reps=3) -> list[dict]:
    """Prints and returns one row per chain count (medians over `reps` interleaved runs)."""
    torch.set_num_threads(1)
    floor = _floor(model, data, loss)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n{label}: {n_params} params, batch {BATCH}, {steps} steps, 1 thread; compute floor {floor * 1e3:.2f} ms")
    _ours(model, data, loss, 2, 5, eps)  # warm-up
    _devinterp(model, data, loss, 1, 5, eps)
    rows = []
    for chains in chain_counts:
        t0 = time.perf_counter()
        _ours(model, data, loss, chains, 5, eps, compile=True)  # compiles for this chain count
        compile_s = time.perf_counter() - t0
        ours, fast, ref = [], [], []
        for _ in range(reps):
            ours.append(_ours(model, data, loss, chains, steps, eps))
            fast.append(_ours(model, data, loss, chains, steps, eps, compile=True))
            ref.append(_devinterp(model, data, loss, chains, steps, eps))
        o, c, r = statistics.median(ours), statistics.median(fast), statistics.median(ref)
        print(f"{chains} chains: devinterp {r:.1f}/s; ours eager {o:.1f}/s = {o / r:.2f}x "
              f"({1 / o / floor:.2f} floors per chain-step); ours compiled {c:.1f}/s = {c / r:.2f}x "
              f"(compilation {compile_s:.1f} s, once per model structure)", flush=True)
        rows.append({"model": label, "params": n_params, "chains": chains, "ours": round(o, 1),
                     "ours_compiled": round(c, 1), "devinterp": round(r, 1), "ratio": round(o / r, 2),
                     "ratio_compiled": round(c / r, 2), "compile_s": round(compile_s, 1)})
    return rows


def main(argv=None) -> list[dict]:
    import warnings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved timed runs per sampler (median reported)")
    ap.add_argument("--chains", type=int, nargs="+", default=[8])
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    rows = bench("small MLP, float64", *_mlp_task(), steps=300, eps=1e-5, chain_counts=args.chains, reps=args.reps)
    rows += bench("compiled fractok, float64", *_compiled_task("fractok"), steps=40, eps=1e-6,
                  chain_counts=args.chains, reps=args.reps)
    print(json.dumps({"benchmark": "sgld_throughput", "device": "cpu", "threads": 1, "torch": torch.__version__,
                      "rows": rows}))
    return rows


if __name__ == "__main__":
    main()
