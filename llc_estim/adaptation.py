"""Step-size adaptation for the Metropolis-adjusted samplers: a first step by doubling or halving, then dual
averaging of the leapfrog step towards a target acceptance (Hoffman & Gelman 2014, sec. 3.2), on a `ChainRun`
whose chains it moves (its main loop then starts from where the warm-up ended).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from llc_estim.sampler import ChainRun
from llc_estim.streams import chain_seeds, noise_generator


def adapt(run: ChainRun, iterations: int, target: float, h0: float = 0.5, start: Optional[torch.Tensor] = None,
          stream: int = 0) -> tuple[torch.Tensor, float, list]:
    """Metropolis warm-up with dual averaging of the leapfrog step h (Hoffman & Gelman 2014, sec. 3.2).

    Runs `run`'s Metropolis steps from w* (or whitened state `start`); `stream` selects a random stream apart
    from the main run's.
    Returns (the chains' final state z, the tuned step size eps = h^2, the mean acceptance per iteration).
    """
    C, P = run.cfg.num_chains, run.flat.size
    children = chain_seeds(run.cfg.seed + 7919 * (stream + 1), C)
    gens = [noise_generator(c, run.flat.device) for c in children]
    uniforms = [noise_generator(c.spawn(1)[0], run.flat.device) for c in children]
    run.total = iterations
    z = torch.zeros(C, P, dtype=run.flat.dtype, device=run.flat.device) if start is None else start
    cached = run.potential(z, run.full)
    h0 = initial_step(run, z, cached, gens, uniforms, h0)
    mu, log_h, log_h_bar, h_bar_stat, history = math.log(10 * h0), math.log(h0), math.log(h0), 0.0, []
    for t in range(iterations):
        z, cached, prob = run.metropolis_step(z, cached, run.full, run.noise(gens, t), uniforms, t, math.exp(log_h))
        history.append(float(prob.mean()))
        k = t + 1
        h_bar_stat = (1 - 1 / (k + 10)) * h_bar_stat + (target - history[-1]) / (k + 10)
        log_h = mu - math.sqrt(k) / 0.05 * h_bar_stat
        weight = k ** -0.75
        log_h_bar = weight * log_h + (1 - weight) * log_h_bar
    return z, math.exp(2 * log_h_bar), history


def initial_step(run: ChainRun, z, cached, gens, uniforms, h: float, tries: int = 30) -> float:
    """A first leapfrog step: doubled or halved from `h` until one trial trajectory per chain crosses an
    acceptance of 0.5 (Hoffman & Gelman's heuristic). The trials do not move the chains."""
    direction = None
    for _ in range(tries):
        momentum = torch.stack([torch.randn(run.flat.size, generator=g, dtype=z.dtype, device=g.device)
                                for g in gens])
        if run.flat.mask is not None:
            momentum = momentum * run.flat.mask
        _, _, prob = run.metropolis_step(z, cached, run.full, momentum, uniforms, 0, h)
        up = float(prob.mean()) > 0.5
        if direction is not None and up != direction:
            return h if up else h / 2
        direction = up
        h = h * 2 if up else h / 2
    return h
