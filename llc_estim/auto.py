"""`auto_llc`: one call that chooses the sampler, preconditioner, step size, burn-in and draws itself.

The algorithm (every choice is recorded in `result.choices`):
1. Curvature. The Hessian H of L_n at w* gives the bounds (rank/2, effective half-rank, d/2) and the first
   preconditioner A = (nbeta H + gamma I)^(-1).
2. Sampler. Metropolis-adjusted HMC in the whitened coordinates w = w* + A^(1/2) z, full batch unless
   `batch_size` is given, so the chains sample the localized posterior exactly however stiff the loss: stiff
   quadratic directions have unit scale after whitening, and walls reject proposals instead of throwing the
   chains off.
3. Step size. Dual averaging towards acceptance 0.75 during a warm-up of `warmup_frac` of the budget, in
   `refreshes + 1` rounds. Between rounds the preconditioner is rebuilt from the Hessian averaged over w* and
   the chains' current states, on `curvature_examples` items of the data: where the posterior actually lives,
   ReLUs that sit exactly at their kink at w* (everywhere in compiled models) are switched on or off, and
   directions that are flat at w* are curved by higher-order terms, so their true scale enters A.
4. Burn-in `burnin_frac` of the budget at the tuned step from the warm-up's end state, then draws with the rest.
   Budget: `max_steps` gradient evaluations per chain, warm-up included (curvature is extra and recorded).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Optional

import numpy as np
import torch

from llc_estim.config import LLCResult, SGLDConfig
from llc_estim.curvature import Curvature, full_loss_of, hessian_eigen, llc_bounds, spectrum_summary
from llc_estim.diagnostics import Thresholds
from llc_estim.params import FlatParams, materialise, num_examples, take, to_device
from llc_estim.precondition import curvature_preconditioner
from llc_estim.adaptation import adapt
from llc_estim.sampler import ChainRun
from llc_estim.streams import torch_threads

TARGET_ACCEPTANCE = 0.75


@dataclasses.dataclass(frozen=True)
class AutoSettings:
    """The knobs of `auto_llc`'s algorithm (defaults are what the docstring describes).

    Attributes:
        leapfrog_steps: leapfrog steps per HMC proposal.
        warmup_frac, burnin_frac: shares of the budget for step-size adaptation and for burn-in.
        curvature_examples: data items the refreshed preconditioner's Hessians use (a random subset; the bounds
            always use all of them).
        refresh_points: chain states the refreshed Hessian averages over (besides w*, whose Hessian is reused).
        dense_max: largest number of sampled entries for a dense Hessian (larger: randomized, low rank).
        refreshes: times the preconditioner is rebuilt during warm-up from the Hessian averaged over w* and the
            chains' states (the flat directions' posterior scale is set by higher-order terms, not by gamma).
    """

    leapfrog_steps: int = 8
    warmup_frac: float = 0.2
    burnin_frac: float = 0.2
    curvature_examples: int = 256
    refresh_points: int = 1
    dense_max: int = 3000
    refreshes: int = 1


def auto_llc(model: torch.nn.Module, data, loss_fn: Callable, *, localization: float, nbeta: Optional[float] = None,
             batch_size: Optional[int] = None, num_chains: int = 4, max_steps: int = 20_000, seed: int = 0,
             param_filter=None, param_masks=None, draw_metric: Optional[Callable] = None,
             draw_metric_min: Optional[float] = None, collate_fn: Optional[Callable] = None,
             settings: AutoSettings = AutoSettings(), progress: bool = True,
             num_threads: Optional[int] = 1, curvature: Optional[Curvature] = None,
             compile: bool = False) -> LLCResult:
    """Estimates the LLC of `model` at its parameters, choosing the sampler settings itself (see module doc).

    Args:
        localization: gamma (> 0).
        nbeta: None means n / log n (n from `data.num_draws` when present, else len(data)).
        max_steps: gradient evaluations per chain, warm-up included.
        draw_metric, draw_metric_min: evaluated on the chains' weights; below the floor flags the estimate.
        curvature: the Hessian of the same loss at w* from an earlier call (`result.curvature`), to skip step 1
            when only nbeta, gamma, the seed or the budget change.
        compile: sample through `torch.compile` (`SGLDConfig.compile`: equal to rounding, faster on small models).

    Returns:
        An `LLCResult` whose `choices` hold the preconditioner, step size, leapfrog steps, burn-in, draws, the
        Hessian bounds and the time spent; `diagnostics["trustworthy"]` also fails when the estimate lies below
        0.85 x the effective half-rank or above d/2.
    """
    if not (isinstance(localization, (int, float)) and localization > 0):
        raise ValueError(f"auto_llc needs localization > 0 (the flat directions' scale), got {localization!r}")
    if not isinstance(max_steps, int) or max_steps < 200:
        raise ValueError(f"max_steps must be an int >= 200, got {max_steps!r}")
    t0 = time.time()
    with torch_threads(num_threads):
        flat = FlatParams(model, param_filter, param_masks)
        full = to_device(materialise(data, collate_fn), flat.device)
        nb = float(nbeta) if nbeta is not None else SGLDConfig(1.0).resolved_nbeta(num_examples(data))
        loss_of = full_loss_of(flat, loss_fn, full, len(data), batch_size)
        if curvature is not None and curvature.num_params != flat.size:
            raise ValueError(f"curvature is for {curvature.num_params} entries, the model has {flat.size} sampled")
        at_w = curvature or hessian_eigen(flat, [(loss_of, flat.w_star)], dense_max=settings.dense_max, seed=seed)
        bounds = llc_bounds(at_w, nb, localization)
        t_curv = time.time() - t0
        iterations = max_steps // settings.leapfrog_steps
        warm = max(int(settings.warmup_frac * iterations), 40 * (settings.refreshes + 1))
        burn = max(int(settings.burnin_frac * iterations), 10)
        draws = max(iterations - warm - burn, 20)
        cfg = SGLDConfig(step_size=1.0, localization=localization, nbeta=nb, num_chains=num_chains, num_draws=draws,
                         num_burnin=burn, batch_size=batch_size, seed=seed, param_filter=param_filter,
                         param_masks=param_masks, preconditioner=curvature_preconditioner(at_w, nb, localization,
                                                                                          flat.mask),
                         metropolis=True, leapfrog_steps=settings.leapfrog_steps, draw_metric=draw_metric,
                         thresholds=Thresholds(draw_metric_min=draw_metric_min), num_threads=None,
                         progress=progress, compile=compile)
        run = ChainRun(model, data, loss_fn, cfg, collate_fn)
        run.bounds = bounds
        rounds = settings.refreshes + 1
        z, eps, warm_acc = adapt(run, warm // rounds, TARGET_ACCEPTANCE)
        sub_loss = _subsample_loss(flat, loss_fn, full, len(data), settings.curvature_examples, seed)
        for r in range(settings.refreshes):
            t1, w = time.time(), run.to_w(z)
            avg = hessian_eigen(flat, [(sub_loss, p) for p in w[:settings.refresh_points]], dense_max=settings.dense_max,
                                seed=seed + r + 1, known=at_w)
            t_curv += time.time() - t1
            precond = curvature_preconditioner(avg, nb, localization, flat.mask)
            z = precond.inv_sqrt_apply(w - flat.w_star)
            run.precond = precond
            z, eps, warm_acc = adapt(run, warm // rounds, TARGET_ACCEPTANCE, h0=math.sqrt(eps), start=z, stream=r + 1)
        run.cfg = cfg = dataclasses.replace(cfg, step_size=eps, preconditioner=run.precond)
        result = run.run(start=z)
    result.curvature = at_w
    result.choices = {
        "sampler": "hmc", "preconditioner": cfg.preconditioner.describe(), "step_size": eps,
        "leapfrog_steps": settings.leapfrog_steps, "warmup_iterations": warm, "burnin_iterations": burn,
        "draw_iterations": draws, "gradient_evaluations_per_chain": (warm + burn + draws) * settings.leapfrog_steps,
        "warmup_final_acceptance": float(sum(warm_acc[-10:]) / len(warm_acc[-10:])),
        "refreshes": settings.refreshes, "full_batch": batch_size is None, "bounds": bounds,
        "spectrum": spectrum_summary(at_w), "seconds_curvature": t_curv, "seconds_total": time.time() - t0,
    }
    return result


def _subsample_loss(flat: FlatParams, loss_fn, full, n_items: int, size: int, seed: int):
    """flat [P] -> the loss on `size` random items (all of them when there are fewer)."""
    if n_items <= size:
        return lambda w: flat.loss(loss_fn, w, full)
    idx = torch.as_tensor(np.random.default_rng(seed).choice(n_items, size, replace=False), device=flat.device)
    part = take(full, idx)
    return lambda w: flat.loss(loss_fn, w, part)
