"""Is a trained model's LLC valid? The checks the compiled models get, adapted to trained weights.

For a trained model at weights w* and the loss the LLC uses (the regularised training loss, see `train`):
  1. minimum: the full-batch gradient norm at w* is reported (the LLC presumes a local minimum);
  2. auto: `llc_estim.auto_llc` (Metropolis-adjusted HMC in Hessian-whitened coordinates, float64 when the model
     is) gives the estimate; its own verdict covers acceptance, R-hat, trend, draws below L(w*), the Hessian
     bounds (0.85 x effective half-rank <= LLC <= d/2) and the draw metric;
  3. basin: the draws keep their accuracy: the training accuracy of every chain's weights stays within
     `acc_drop` of the accuracy at w* (the draw metric's floor);
  4. step size: SGLD without Metropolis correction at two step sizes a factor `sgld_step_ratio` apart agrees with
     itself and with the HMC estimate to within `tolerance` (relative). The smaller step runs `sgld_step_ratio`
     times as many iterations, so both simulate the same Langevin time (otherwise the smaller step has simply not
     mixed as far). `sgld_mode="plain"`: no preconditioner,
     the larger step `sgld_step` x 2 / (nbeta h_max + gamma) (h_max the largest Hessian eigenvalue, the stiffest
     direction's stability limit); `"whitened"`: in auto_llc's Hessian-whitened coordinates (its preconditioner),
     where every quadratic direction has unit curvature, the larger step is `sgld_step` itself. Plain SGLD cannot
     equilibrate stiff models (curvatures spanning 1e-6 to 1e1) in a few hundred steps; the whitened one tests the
     discretisation alone.
`valid` is the conjunction; the reasons say which failed. Every number is returned, valid or not.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Callable, Optional

import torch
from torch.utils.data import TensorDataset

from llc_estim import (AutoSettings, LLCWarning, SGLDConfig, SGLDDivergenceError, Thresholds, auto_llc,
                       estimate_llc, trace_record)
from llc_training.objectives import grad_norm, outputs_only
from llc_training.train import Task, _accuracy_metric, summarize_result


@dataclasses.dataclass(frozen=True)
class TrainedLLCSettings:
    """Everything that fixes a trained model's estimate and its checks (recorded with every number).

    Attributes:
        localization: gamma.
        nbeta: inverse temperature times n; None means n / log n.
        max_steps: `auto_llc` gradient evaluations per chain.
        num_chains: chains per estimate.
        seed: sampler seed.
        acc_drop: largest allowed fall of the draws' training accuracy below the accuracy at w*.
        sgld_mode: "plain" or "whitened" (see the module doc).
        sgld_step: the larger SGLD step (plain: as a fraction of 2 / (nbeta h_max + gamma); whitened: in whitened
            coordinates); 0 skips the step-size check.
        sgld_step_ratio: the smaller step is the larger divided by this.
        sgld_draws, sgld_burnin: SGLD iterations per chain.
        sgld_batch: SGLD minibatch size (None: full batch).
        tolerance: relative disagreement allowed between the three estimates.
        dense_max: largest parameter count with a dense Hessian in `auto_llc`.
        refreshes: `auto_llc`'s preconditioner rebuilds during warm-up (each costs a Hessian at 3 points; they
            matter for compiled models, whose ReLUs sit at their kinks at w*, less for smooth trained ones).
    """

    localization: float = 1.0
    nbeta: Optional[float] = None
    max_steps: int = 2000
    num_chains: int = 4
    seed: int = 0
    acc_drop: float = 0.05
    sgld_mode: str = "plain"
    sgld_step: float = 0.05
    sgld_step_ratio: float = 2.0
    sgld_draws: int = 600
    sgld_burnin: int = 400
    sgld_batch: Optional[int] = None
    tolerance: float = 0.2
    dense_max: int = 5000
    refreshes: int = 1


def trained_llc(model: torch.nn.Module, task: Task, train_data: tuple, loss_fn: Callable,
                st: TrainedLLCSettings) -> dict:
    """The LLC of a trained model at its weights under `loss_fn` on `train_data`, with the checks (module doc).

    Args:
        model: the model (e.g. a float64 `WithSquaredNorm`), left unchanged.
        task: gives the accuracy used as the draw metric.
        train_data: the training tensors (the estimator's data set).
        loss_fn: the loss the LLC uses.

    Returns:
        {"llc_mean", "llc_std", "valid", "reasons", "checks", "grad_norm", "train_acc", "auto" (its summary,
         bounds, choices and `trace_record`), "sgld" (the two SGLD summaries), "step_change", "seconds", "settings"}.
    """
    t0 = time.time()
    data = TensorDataset(*train_data)
    acc0 = task.accuracy(outputs_only(model), train_data)
    g = grad_norm(model, loss_fn, train_data)
    metric = _accuracy_metric(task, train_data)
    floor = acc0 - st.acc_drop
    with warnings.catch_warnings():  # the verdicts are recorded with the numbers
        warnings.simplefilter("ignore", LLCWarning)
        res = auto_llc(model, data, loss_fn, localization=st.localization, nbeta=st.nbeta,
                       num_chains=st.num_chains, max_steps=st.max_steps, seed=st.seed, draw_metric=metric,
                       draw_metric_min=floor, settings=AutoSettings(dense_max=st.dense_max, refreshes=st.refreshes),
                       progress=False)
    auto = summarize_result(res)
    auto.update(bounds=res.choices.get("bounds"), spectrum=res.choices.get("spectrum"),
                step_size=res.choices.get("step_size"), seconds=res.choices.get("seconds_total"),
                trace=trace_record(res))
    sgld = []
    if st.sgld_step > 0:
        if st.sgld_mode == "whitened":
            eps, precond = st.sgld_step, res.config.preconditioner
        elif st.sgld_mode == "plain":
            h_max = float(res.choices["spectrum"]["h_max"])
            eps, precond = 2 * st.sgld_step / (res.nbeta * h_max + st.localization), None
        else:
            raise ValueError(f"sgld_mode must be 'plain' or 'whitened', got {st.sgld_mode!r}")
        for e, k in ((eps, 1.0), (eps / st.sgld_step_ratio, st.sgld_step_ratio)):
            cfg = SGLDConfig(step_size=e, localization=st.localization, nbeta=res.nbeta, num_chains=st.num_chains,
                             num_draws=int(round(k * st.sgld_draws)), num_burnin=int(round(k * st.sgld_burnin)),
                             batch_size=st.sgld_batch,
                             seed=st.seed, preconditioner=precond, draw_metric=metric,
                             thresholds=Thresholds(draw_metric_min=floor), progress=False)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", LLCWarning)
                    sgld.append(summarize_result(estimate_llc(model, data, loss_fn, cfg)))
            except SGLDDivergenceError as err:
                sgld.append({"llc_mean": math.nan, "step_size": e, "trustworthy": False,
                             "warnings": [f"diverged: {err}"]})
    values = [auto["llc_mean"]] + [s["llc_mean"] for s in sgld]
    ref = max(abs(auto["llc_mean"]), 1e-12)
    step_change = max((abs(v - w) / ref for v in values for w in values), default=0.0) if sgld else math.nan
    checks = {"auto_verdict": bool(auto["trustworthy"]),
              "basin": bool(math.isfinite(auto["draw_metric_min"]) and auto["draw_metric_min"] >= floor),
              "step_size": bool(sgld and math.isfinite(step_change) and step_change <= st.tolerance)}
    reasons = []
    if not checks["auto_verdict"]:
        reasons.append("auto_llc verdict: " + "; ".join(auto["warnings"]))
    if not checks["basin"]:
        reasons.append(f"draws lost accuracy (min {auto['draw_metric_min']:.3f}, floor {floor:.3f})")
    if not checks["step_size"]:
        reasons.append("step-size dependence: HMC {:.3g}, SGLD {}".format(
            auto["llc_mean"], ", ".join(f"{s['llc_mean']:.3g} (eps {s['step_size']:.2g})" for s in sgld))
            if sgld else "step-size check not run")
    return {"llc_mean": auto["llc_mean"], "llc_std": auto["llc_std"], "valid": all(checks.values()),
            "reasons": reasons, "checks": checks, "grad_norm": g, "train_acc": acc0, "auto": auto, "sgld": sgld,
            "step_change": step_change, "seconds": time.time() - t0, "settings": dataclasses.asdict(st),
            "sgld_mode": st.sgld_mode}
