"""Chain-steps per second of our SGLD at 8, 64 and 256 chains on compiled palindrome and peak (float64).

`python -m benchmarks.chain_throughput` on the CPU (one torch thread), `LLC_DEVICE=cuda python -m
benchmarks.chain_throughput` on a GPU; unchanged otherwise. Options: `--chains 8 64 256`, `--programs palindrome
peak`, `--steps 10`, `--budget 120` (seconds per configuration: a configuration whose predicted time, scaled from
the measured smaller chain counts, exceeds it is skipped and reported as such, as is one that would not fit in
memory).

Problem: the teacher problem of each program at n = 256 generated sequences (seed 0; deduplicated: 179 distinct
sequences for palindrome, 232 for peak, weighted by multiplicity), full batch, nbeta = 100, gamma = 1000, plain
SGLD at step 1e-9 (no MALA check), one warm-up run per configuration, then `--steps` timed iterations. The
baseline is the 8-chain run of the same program in the same process: `scaling` is chain-steps/s relative to it.
The last line is a JSON record of every number.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from llc_estim import SGLDConfig, estimate_llc


def device_from_env() -> torch.device:
    """`LLC_DEVICE` (cpu, cuda or cuda:N; default cpu), as the studies read it.

    Raises:
        ValueError: another value, or CUDA requested where there is none.
    """
    name = os.environ.get("LLC_DEVICE", "cpu").strip() or "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (kind == "cpu" and index) or (index and not index.isdigit()):
        raise ValueError(f"LLC_DEVICE must be cpu, cuda or cuda:N, got {name!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"LLC_DEVICE={name} but CUDA is not available")
    return torch.device(name)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _free_bytes(dev: torch.device) -> float:
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return float(free)
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: line.split()[1] for line in f}
        return float(info["MemAvailable"]) * 1024
    except (OSError, KeyError):
        return float("inf")


def _run(prob, chains: int, steps: int) -> float:
    """Seconds for `steps` SGLD iterations of `chains` chains (set-up included, as a study pays it)."""
    cfg = SGLDConfig(step_size=1e-9, localization=1000.0, nbeta=100.0, num_chains=chains, num_draws=steps,
                     num_burnin=0, mala_every=0, progress=False, num_threads=None)
    _sync(prob.model.unembed.device)
    t0 = time.perf_counter()
    estimate_llc(prob.model, prob.data, prob.loss_fn, cfg)
    _sync(prob.model.unembed.device)
    return time.perf_counter() - t0


def bench_program(name: str, dev: torch.device, chain_counts, steps: int, budget: float) -> list[dict]:
    from datasets.teacher import teacher_problem
    from rasp_models import registry

    prob = teacher_problem(registry.get(name), 256, seed=0, dtype=torch.float64, device=dev)
    P = sum(p.numel() for p in prob.model.parameters())
    print(f"\n{name}: {P} params, full batch of {len(prob.data)} distinct sequences (n = {prob.n}), {dev}, "
          f"{steps} timed steps")
    print(f"{'chains':>6s} {'chain-steps/s':>14s} {'s/step':>8s} {'scaling':>8s}")
    rows, base, per_chain = [], None, None
    for chains in chain_counts:
        row = {"program": name, "params": P, "device": str(dev), "chains": chains, "batch": len(prob.data)}
        # memory: a few [C, P] float64 tensors, the noise block (<= 2 GiB), and activations (scaled from 8 chains)
        need = 8 * chains * P * 8 + 2 ** 31
        predicted = per_chain * chains * steps if per_chain is not None else 0.0
        if need > 0.8 * _free_bytes(dev):
            row["skipped"] = f"needs ~{need / 2 ** 30:.1f} GiB"
        elif predicted > budget:
            row["skipped"] = f"predicted {predicted:.0f} s > budget {budget:.0f} s"
        else:
            try:
                _run(prob, chains, 2)  # warm-up (and a check that it fits)
                seconds = _run(prob, chains, steps)
            except (torch.OutOfMemoryError, RuntimeError) as err:
                if "out of memory" not in str(err).lower():
                    raise
                row["skipped"] = "out of memory"
            else:
                rate = chains * steps / seconds
                base = base or rate
                per_chain = seconds / (chains * steps)
                row.update({"chain_steps_per_s": round(rate, 1), "s_per_step": round(seconds / steps, 4),
                            "scaling_vs_first": round(rate / base, 2)})
        rows.append(row)
        if "skipped" in row:
            print(f"{chains:6d} {'skipped: ' + row['skipped']}", flush=True)
        else:
            print(f"{chains:6d} {row['chain_steps_per_s']:14.1f} {row['s_per_step']:8.3f} "
                  f"{row['scaling_vs_first']:8.2f}", flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv=None) -> list[dict]:
    import warnings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, nargs="+", default=[8, 64, 256])
    ap.add_argument("--programs", nargs="+", default=["palindrome", "peak"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per configuration before skipping")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    dev = device_from_env()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    rows = []
    for name in args.programs:
        rows += bench_program(name, dev, sorted(args.chains), args.steps, args.budget)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    print(json.dumps({"benchmark": "chain_throughput", "device": str(dev), "gpu": gpu,
                      "threads": torch.get_num_threads() if dev.type == "cpu" else None, "torch": torch.__version__,
                      "steps": args.steps, "rows": rows}))
    return rows


if __name__ == "__main__":
    main()
