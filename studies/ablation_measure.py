"""The measurements of the ablation study: one LLC estimate with its verdict, and fine-tuning of the kept entries.

`llc` is a thin wrapper of `llc_estim.auto_llc` with the study's one set of `ValiditySettings` (the same settings
`studies.validity.estimate` uses: localization, nbeta = n * beta, chains, budget, seed, algorithm settings, the
decoded accuracy as draw metric with floor 0.99), plus what that wrapper does not pass yet: `param_masks` and
`param_filter`, so an estimate samples only the entries an ablation kept, or only a component's entries. The verdict
of every estimate is the estimator's own (`trustworthy` and its `warnings`: acceptance, R-hat, trend, draws below
L(w*), Hessian bounds, draw metric) plus the protocol's basin check (mean draw loss <= 0.05 above the loss at the start, which is 0 at an exact
minimum) and the study's own
flags (a ReLU within `kink_tol` of its kink; a start that is not a minimum: see `gradient_bias`).

`finetune` trains the kept entries back towards a target loss: Adam, then full-batch L-BFGS (`llc_training.
objectives.polish`), with gradient hooks that zero the removed entries' gradients, so removed entries never move.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable, Optional

import numpy as np
import torch

from llc_estim import LLCWarning, auto_llc, trace_record
from llc_training.objectives import grad_norm, polish

BASIN_LOSS = 0.05  # research protocol 2: mean draw teacher loss (here: above the loss at the start)


def gradient_bias(grad: float, nbeta: float, localization: float) -> float:
    """How far a start that is not a minimum can move the estimate, in LLC units: nbeta^2 |g|^2 / (2 gamma).

    At a point with gradient g the localized posterior's mean shifts by -(nbeta H + gamma)^-1 nbeta g, which lowers
    E[nbeta L] by nbeta^2 g^T (nbeta H + gamma)^-1 g / 2 <= nbeta^2 |g|^2 / (2 gamma). Above 1 the estimate can be
    off by more than one unit of LLC, and negative LLCs become possible.
    """
    return float(nbeta) ** 2 * float(grad) ** 2 / (2.0 * float(localization))


def llc(model, data, loss_fn, st, *, nbeta: float, draw_metric: Optional[Callable] = None, draw_floor: float = 0.99,
        param_masks: Optional[dict] = None, param_filter=None, localization: Optional[float] = None,
        auto=None) -> dict:
    """One `auto_llc` estimate with the settings `st` (a `studies.validity.ValiditySettings` or any object with
    localization, num_chains, max_steps, seed, auto), summarised with its verdict.

    Returns:
        {"llc_mean", "llc_std", "trustworthy", "warnings", "rhat", "acceptance", "draw_metric_min",
         "mean_draw_loss", "half_rank", "effective_half_rank", "half_dim", "sampled", "step_size", "nbeta",
         "seconds", "ok", "why", "trace"}: `ok` is the estimator's verdict and the basin check together, `why` the reasons.
    """
    gamma = st.localization if localization is None else localization
    with warnings.catch_warnings():  # the verdict is recorded with the number
        warnings.simplefilter("ignore", LLCWarning)
        res = auto_llc(model, data, loss_fn, localization=gamma, nbeta=nbeta, num_chains=st.num_chains,
                       max_steps=st.max_steps, seed=st.seed, draw_metric=draw_metric,
                       draw_metric_min=draw_floor if draw_metric is not None else None,
                       settings=auto if auto is not None else st.auto, progress=False,
                       param_masks=param_masks, param_filter=param_filter)
    d, b = res.diagnostics, res.choices["bounds"]
    why = list(d["warnings"])
    mean_draw = float(res.loss_trace.mean())
    if mean_draw - res.init_loss > BASIN_LOSS:
        why.append(f"mean draw loss {mean_draw:.3g} is more than {BASIN_LOSS} above L(w*) = {res.init_loss:.3g} (the "
                   "draws left the basin)")
    return {"llc_mean": float(res.llc_mean), "llc_std": float(res.llc_std), "trustworthy": bool(res.trustworthy),
            "warnings": list(d["warnings"]), "rhat": float(d.get("rhat_loss", math.nan)),
            "acceptance": float(d.get("mala_acceptance", math.nan)),
            "draw_metric_min": float(d.get("draw_metric_min", math.nan)), "mean_draw_loss": mean_draw,
            "half_rank": float(b["half_rank"]), "effective_half_rank": float(b["effective_half_rank"]),
            "half_dim": float(b["half_dim"]), "sampled": int(res.num_sampled_params),
            "step_size": float(res.choices["step_size"]), "nbeta": float(res.nbeta),
            "seconds": float(res.choices["seconds_total"]), "ok": not why, "why": why, "trace": trace_record(res)}


def _mask_hooks(model, keep: dict) -> list:
    params = dict(model.named_parameters())
    return [params[n].register_hook(lambda g, m=m: g * m.to(g.dtype)) for n, m in keep.items()]


def finetune(model, loss_fn: Callable, data: tuple, keep: dict, *, steps: int, lr: float, polish_iter: int,
             seed: int = 0, batch_size: Optional[int] = None) -> tuple:
    """A copy of `model` with its kept entries trained on `loss_fn(model, data)`: `steps` Adam steps (full batch,
    or minibatches of `batch_size` from a seeded generator), then up to `polish_iter` L-BFGS iterations.

    Args:
        keep: parameter name -> bool mask of the entries that may move (parameters not named move freely).

    Returns:
        (model, {"loss_before", "loss_after", "grad_norm" (at the end, over the entries that may move),
                 "polish_iterations", "adam_steps"}).
    """
    new = copy.deepcopy(model)
    hooks = _mask_hooks(new, keep)
    try:
        with torch.no_grad():
            before = float(loss_fn(new, data))
        opt = torch.optim.Adam(new.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        n = len(data[0])
        for _ in range(steps):
            batch = data
            if batch_size and batch_size < n:
                idx = torch.randint(0, n, (batch_size,), generator=gen)
                batch = tuple(t[idx] for t in data)
            loss = loss_fn(new, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        pol = polish(new, loss_fn, data, max_iter=polish_iter) if polish_iter else {"iterations": 0}
        g = grad_norm(new, loss_fn, data)
        with torch.no_grad():
            after = float(loss_fn(new, data))
    finally:
        for h in hooks:
            h.remove()
    params = dict(new.named_parameters())
    for name, m in keep.items():  # Adam's moments never move a masked entry: its gradient is always exactly 0
        assert torch.equal(params[name].detach()[~m], dict(model.named_parameters())[name].detach()[~m]), name
    return new, {"loss_before": before, "loss_after": after, "grad_norm": g,
                 "polish_iterations": int(pol.get("iterations", 0)), "adam_steps": steps}


def summary_stats(values) -> dict:
    """Mean, sample standard deviation and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    return {"mean": float(v.mean()) if len(v) else math.nan,
            "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan, "n": int(len(v))}
