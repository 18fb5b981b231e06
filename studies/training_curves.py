"""Research question 2, training curves and compiled vs trained: the jobs behind parts 2 and 3 of `studies.training`.

`run_curve_job` trains one run with log-spaced checkpoints, the LLC at each, lead-lag of LLC and validation loss
within the run, and saves the final model for the ablation study; `compare_compiled` puts a compiled and a trained
model of the same architecture under one common loss at the same nbeta and gamma. The data helpers here are shared
with the sweep.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from datasets import generators
from datasets.dataloaders import labelled_tensors
from llc_estim import SGLDConfig
from llc_training import correlation, leadlag
from llc_training.model import ModelConfig, TrainableTransformer
from llc_training.objectives import WithSquaredNorm, grad_norm, outputs_only, polish, regularised
from llc_training.train import TrainConfig, llc_curve, save_history, sequence_task, train
from llc_training.validity import TrainedLLCSettings, trained_llc
from rasp_models import registry
from studies.training_report import plot_curve
from tracr.haiku_to_pytorch import to_torch


@dataclasses.dataclass(frozen=True)
class CompareSettings:
    """Compiled vs trained under the common loss (see the module doc), on the comparing run's training sequences:
    auto_llc settings for both models, and the L-BFGS iterations that take the trained model to the loss's
    minimum."""

    nbeta: float
    localization: float
    max_steps: int
    n: int = 256
    num_chains: int = 4
    polish_iter: int = 2000
    acc_drop: float = 0.05


@dataclasses.dataclass(frozen=True)
class CurveJob:
    """One training run with the LLC along training (picklable).

    Attributes:
        name: run name (folder).
        program: registered program.
        sizes: train, validation and test set sizes (`generators.splits` with the training seed).
        train: optimiser and log-spaced checkpoints.
        sgld: the curve's sampler (regularised loss, float64); nbeta None means n / log n.
        acc_drop: the draws' training accuracy may fall at most this far below the checkpoint's.
        polish_iter: L-BFGS iterations after the last checkpoint.
        llc: auto_llc checks at the final (polished) weights; None: skipped (e.g. too many parameters).
        max_lag: cross-correlation lags each way.
    """

    name: str
    program: str
    sizes: tuple
    train: TrainConfig
    sgld: SGLDConfig
    acc_drop: float
    polish_iter: int
    llc: Optional[TrainedLLCSettings]
    max_lag: int = 3


# --- data and models -------------------------------------------------------------------------------------------

def labelled_data(spec, seqs, compiled, dtype=torch.float32):
    """(ids, labels, mask) of `seqs` labelled by the compiled model, float labels in `dtype` for numerical outputs."""
    ids, y, m = labelled_tensors(spec, seqs, compiled)
    return ids, (y.to(dtype) if spec.numerical else y), m


def cast64(batch):
    """The batch with its floating tensors in float64 (for polishing and measuring)."""
    return tuple(t.double() if torch.is_floating_point(t) else t for t in batch)


class CompiledOutputs(torch.nn.Module):
    """A converted compiled model whose forward gives its readout (the fixed unembedding of the final residual),
    so the compiled and the trained models are called alike: ids -> outputs [B, T, n_out]."""

    def __init__(self, compiled_torch):
        super().__init__()
        self.inner = compiled_torch

    def forward(self, ids):
        return self.inner.readout(self.inner(ids))


def quiet_call(fn, *args):
    """fn(*args) with its warnings silenced (verdicts are recorded in the result instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


# --- curves and compiled vs trained ------------------------------------------------------------------------------

def run_curve_job(job: CurveJob, out_dir: str) -> dict:
    """Trains one run with log-spaced checkpoints, its LLC curve, the final checks, the comparison with the compiled
    model; writes `out_dir/<name>/` (figure, curves, final model)."""
    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    out = Path(out_dir) / job.name
    spec = registry.get(job.program)
    compiled = spec.compile()
    tr, va, te = generators.splits(spec, job.sizes, seed=job.train.seed)
    train_data, val_data, test_data = (labelled_data(spec, s, compiled) for s in (tr, va, te))
    task = sequence_task(spec.numerical)
    model = TrainableTransformer(ModelConfig.from_compiled(compiled), seed=job.train.seed)
    hist = train(model, task, train_data, val_data, job.train, progress=False)
    wd = job.train.weight_decay
    reg = regularised(task.loss, wd)
    nbeta = job.sgld.nbeta
    curve = quiet_call(llc_curve, WithSquaredNorm(model), task, train_data, hist, job.sgld, False, reg,
                        torch.float64, job.acc_drop, reg)
    wrapped = WithSquaredNorm(model).double()
    tr64 = cast64(train_data)
    pol = polish(wrapped, reg, tr64, job.polish_iter)
    baseline = task.majority_baseline(val_data)
    val_acc = task.accuracy(outputs_only(wrapped), cast64(val_data))
    res = {"name": job.name, "program": job.program, "num_params": sum(p.numel() for p in model.parameters()),
           "sizes": list(job.sizes), "final_train_acc": task.accuracy(outputs_only(wrapped), tr64),
           "final_val_acc": val_acc, "test_acc": task.accuracy(outputs_only(wrapped), cast64(test_data)),
           "majority_baseline_val": baseline, "learned": bool(val_acc > baseline + 0.05), "polish": pol,
           "curve_nbeta": nbeta if nbeta else len(tr) / math.log(len(tr)), "weight_decay": wd,
           "step_size": job.sgld.step_size}
    res["llc_curve_final"] = {"llc/mean": curve["llc_mean"][-1], "llc/std": curve["llc_std"][-1],
                              "trustworthy": curve["trustworthy"][-1]}
    res["curve_trustworthy"] = int(sum(curve["trustworthy"]))
    final = (quiet_call(trained_llc, wrapped, task, tr64, reg, dataclasses.replace(job.llc, nbeta=nbeta))
             if job.llc is not None and res["num_params"] <= job.llc.dense_max else None)
    res["final_llc"] = slim(final) if final else None
    res["traces"] = [(f"curve {job.name}: SGLD at step {hist.steps[i]}", curve["trace"][i])
                     for i in sorted({0, len(hist.steps) - 1})]
    res["traces"] += [(f"curve {job.name}: auto_llc at the end", final["auto"]["trace"])] if final else []
    res["llc/mean"] = res["final_llc"]["llc_mean"] if res["final_llc"] else curve["llc_mean"][-1]
    res["llc/std"] = res["final_llc"]["llc_std"] if res["final_llc"] else curve["llc_std"][-1]
    res["lead_lag"] = curve_lead_lag(curve["llc_mean"], hist.val_loss, job.max_lag)
    out.mkdir(parents=True, exist_ok=True)
    save_history(out / "curves.json", hist, {k: curve[k] for k in ("llc_mean", "llc_std", "trustworthy", "warnings",
                                                                    "acceptance", "draw_acc_min", "grad_norm")})
    plain_sgld = {k: v for k, v in job.sgld.to_dict().items()
                  if k not in ("thresholds", "preconditioner", "draw_metric", "param_filter", "param_masks")}
    torch.save({"state": {k: v.float() for k, v in wrapped.inner.state_dict().items()},
                "model_config": dataclasses.asdict(model.cfg), "run": job.name, "program": job.program,
                "sizes": job.sizes, "seed": job.train.seed, "sgld": plain_sgld, "step_size": job.sgld.step_size,
                "learned": res["learned"]}, out / "final_model.pt")
    plot_curve(job, hist, curve, res, out / "training_llc.png")
    res["seconds"], res["cpu_seconds"] = time.time() - t0, time.process_time() - c0
    return res


def curve_lead_lag(llc: list, val_loss: list, max_lag: int) -> dict:
    """Within one run: the pre-whitened cross-correlation of LLC and log validation loss (Holm over lags) and the
    range of their plain correlation when any one checkpoint is left out."""
    x = np.asarray(llc, float)
    y = np.log10(np.asarray(val_loss, float))
    ok = np.isfinite(x) & np.isfinite(y)
    out = {"leave_one_out": correlation.leave_one_out(x[ok], y[ok])}
    if ok.sum() >= 2 * max_lag + 8:
        out["ccf"] = leadlag.prewhitened_ccf(x[ok], y[ok], max_lag)
    else:
        out["ccf"] = {"note": f"{int(ok.sum())} checkpoints are too few for {max_lag} lags each way"}
    return out


def compare_compiled(spec, compiled, trained: TrainableTransformer, seqs: list, cs: CompareSettings,
                     seed: int) -> dict:
    """The compiled and the trained model under the common loss on the same `cs.n` training sequences, same nbeta
    and gamma; the trained model first fine-tuned (L-BFGS, no weight decay) to a minimum of that loss."""
    from torch.utils.data import TensorDataset

    from llc_estim import LLCWarning, auto_llc
    from llc_training.train import _accuracy_metric, summarize_result

    task = sequence_task(spec.numerical, loss_kind="mse_onehot")
    data = cast64(labelled_data(spec, seqs, compiled))
    models = {"compiled": CompiledOutputs(to_torch(compiled, dtype=torch.float64)),
              "trained": copy.deepcopy(trained.inner if isinstance(trained, WithSquaredNorm) else trained).double()}
    out = {"program": spec.name, "loss": ("mean over real positions of the squared distance between the model's outputs and the labels "
                    + ("(numerical value)" if spec.numerical else "(one-hot)") + "; no regulariser"),
           "n": len(data[0]), "nbeta": cs.nbeta, "localization": cs.localization}
    out["trained_finetune"] = polish(models["trained"], task.loss, data, cs.polish_iter)
    for name, m in models.items():
        acc = task.accuracy(m, data)
        with torch.no_grad():
            loss = float(task.loss(m, data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LLCWarning)
            r = auto_llc(m, TensorDataset(*data), task.loss, localization=cs.localization, nbeta=cs.nbeta,
                         num_chains=cs.num_chains, max_steps=cs.max_steps, seed=seed,
                         draw_metric=_accuracy_metric(task, data), draw_metric_min=acc - cs.acc_drop, progress=False)
        s = summarize_result(r)
        out[name] = {"llc_mean": s["llc_mean"], "llc_std": s["llc_std"], "trustworthy": s["trustworthy"],
                     "warnings": s["warnings"], "loss_at_w": loss, "grad_norm": grad_norm(m, task.loss, data),
                     "accuracy": acc, "draw_acc_min": s["draw_metric_min"], "bounds": r.choices["bounds"],
                     "num_params": sum(p.numel() for p in m.parameters()), "step_size": r.choices["step_size"]}
    return out



def slim(res: dict) -> dict:
    """A `trained_llc` result without its per-chain lists and trace record."""
    keep = {k: v for k, v in res.items() if k not in ("auto", "sgld")}
    keep["auto"] = {k: v for k, v in res["auto"].items() if k not in ("llc_per_chain", "trace")}
    keep["sgld"] = [{k: v for k, v in s.items() if k != "llc_per_chain"} for s in res["sgld"]]
    return keep
