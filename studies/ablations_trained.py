"""Ablations of trained transformers, by the same weight-editing code as the compiled models' (`studies.ablate`).

For each program a small transformer of the compiled models' family (`llc_training.model.TrainableTransformer`:
the same body, trainable embeddings and readout; two layers here, like the prior attempt's model, widths in the
config) is trained in float64 with Adam and L2 weight decay, so the regularised training loss
L(w) + (wd/2)|w|^2 has a minimum, and finished with full-batch L-BFGS to one (gradient norm reported). It must beat
the majority-class baseline on held-out data before anything is measured.

The prior attempt's table reported the training-loss LLC of the model with a component removed. That number is not
an LLC: the ablated weights are not a minimum of the training loss (removing a layer raises the loss and leaves a
large gradient), so the localized posterior slides downhill and the estimate can be anything, negative included
(it reported values down to -29). Here each ablation (the prior's three: attention layer 1, layer 1, MLP layer 0;
zero- and mean-ablation) gets
  * (a) the LLC under the ablated model's *own-output* loss (mean over real positions of |f_w(x) - f_ablated(x)|^2
    on the training inputs), whose exact minimum the ablated weights are, sampling only the kept entries, compared
    with the intact model's LLC under its own-output loss;
  * (b) the LLC under the regularised training loss after fine-tuning the kept entries to a minimum of it (Adam,
    then L-BFGS), compared with the intact model's LLC under the same loss;
  * "naive": what the prior attempt measured, the regularised training-loss LLC at the ablated weights themselves,
    with the gradient norm there and the bound on how far a non-minimum can move the estimate
    (`studies.ablation_measure.gradient_bias`): reported to explain negative values, flagged, never used.
Zero-ablating a whole sublayer also zeroes its output bias (b_O, b_out), so its output is 0; mean-ablation keeps the
bias and adds the removed part's mean output to it.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from datasets import generators
from datasets.dataloaders import labelled_tensors
from llc_estim import AutoSettings
from llc_estim.ablation import keep_masks
from llc_training.model import ModelConfig, TrainableTransformer
from llc_training.objectives import WithSquaredNorm, grad_norm, outputs_only, polish, regularised
from llc_training.train import TrainConfig, sequence_task, train
from rasp_models import registry
from studies.ablate import ablate_components
from studies.ablation_measure import finetune, gradient_bias, llc
from studies.runner import run_jobs
from tracr.torch_components import Component, structural_components


@dataclasses.dataclass(frozen=True)
class TrainedEstimate:
    """The sampler settings of every trained-model estimate (the training study's: gamma 1e4, nbeta 1e6)."""

    localization: float = 1e4
    nbeta: float = 1e6
    max_steps: int = 800
    num_chains: int = 4
    seed: int = 0
    auto: AutoSettings = AutoSettings(dense_max=4000, refreshes=0)


@dataclasses.dataclass(frozen=True)
class TrainedConfig:
    """The trained-model part of the study.

    Attributes:
        programs: registered programs to train on.
        arch: ModelConfig overrides for every model ((name, value) pairs): two layers, small widths.
        sizes: (train, validation, test) sequences (`datasets.generators.splits`).
        train: Adam with L2 weight decay (`optimizer="adam"`, so the regularised loss has a minimum).
        polish_iter: L-BFGS iterations at the end of training.
        ablations: (name, (component names,)) in `structural_components` terms plus `L{i}.attn` (every head of
            layer i).
        modes: "zero", "mean".
        quantities: what zero-ablations get: "a", "b", "naive" (module doc); mean_quantities: mean-ablations.
        finetune_steps, finetune_lr, finetune_polish: the fine-tune of (b).
        estimate: the sampler settings.
        acc_drop: a draw whose training accuracy falls more than this below its start's flags the estimate.
    """

    programs: tuple = ("fractok", "palindrome", "peak")
    arch: tuple = (("num_layers", 2), ("d_model", 8), ("num_heads", 2), ("key_size", 4), ("mlp_hidden", 8))
    sizes: tuple = (256, 128, 512)
    train: TrainConfig = TrainConfig(steps=3000, batch_size=64, lr=3e-3, weight_decay=1e-4, checkpoints=(3000,),
                                     optimizer="adam")
    polish_iter: int = 1000
    ablations: tuple = (("without attention layer 1", ("L1.attn",)), ("without layer 1", ("L1.attn", "L1.MLP")),
                        ("without MLP layer 0", ("L0.MLP",)))
    modes: tuple = ("zero", "mean")
    quantities: tuple = ("a", "b", "naive")
    mean_quantities: tuple = ("a",)
    finetune_steps: int = 300
    finetune_lr: float = 1e-3
    finetune_polish: int = 1000
    estimate: TrainedEstimate = TrainedEstimate()
    acc_drop: float = 0.05

    @staticmethod
    def preset(name: str) -> "TrainedConfig":
        if name == "smoke":
            return TrainedConfig(programs=("fractok",), arch=(("num_layers", 2), ("d_model", 8), ("num_heads", 1),
                                                              ("key_size", 4), ("mlp_hidden", 4)),
                                 sizes=(32, 16, 32),
                                 train=TrainConfig(steps=40, batch_size=16, lr=3e-3, weight_decay=1e-4,
                                                   checkpoints=(40,), optimizer="adam"),
                                 polish_iter=10, ablations=(("without MLP layer 0", ("L0.MLP",)),),
                                 modes=("mean",), mean_quantities=("a",), finetune_steps=5, finetune_polish=5,
                                 estimate=TrainedEstimate(max_steps=200, num_chains=2,
                                                          auto=AutoSettings(leapfrog_steps=2, dense_max=500,
                                                                            refreshes=0)))
        if name == "quick":
            return TrainedConfig()
        if name == "full":
            return TrainedConfig(sizes=(1000, 300, 1000), mean_quantities=("a", "b", "naive"),
                                 train=TrainConfig(steps=6000, batch_size=64, lr=3e-3, weight_decay=1e-4,
                                                   checkpoints=(6000,), optimizer="adam"),
                                 polish_iter=1000, finetune_steps=1000, finetune_polish=1000,
                                 estimate=TrainedEstimate(max_steps=3000))
        raise KeyError(name)


def output_match_loss(model, batch) -> torch.Tensor:
    """Mean over real positions of |model(ids) - target|^2 (the trained models' analogue of the teacher loss)."""
    ids, target, mask = batch[:3]
    d = ((outputs_only(model)(ids) - target) ** 2).sum(-1)
    w = mask.to(d.dtype)
    return (d * w).sum() / w.sum()


class _Agreement:
    """Draw metric: share of real positions where the model's output matches the target (argmax, or within tol)."""

    def __init__(self, data: tuple, numerical: bool, tol: float = 0.02):
        self.data, self.numerical, self.tol = data, numerical, tol
        self.__name__ = "agreement"

    @torch.no_grad()
    def __call__(self, model) -> float:
        ids, target, mask = self.data
        out = outputs_only(model)(ids)
        ok = (out[..., 0] - target[..., 0]).abs() < self.tol if self.numerical else out.argmax(-1) == target.argmax(-1)
        return float(ok[mask].double().mean())


class _TrainAccuracy:
    def __init__(self, task, data: tuple):
        self.task, self.data = task, data
        self.__name__ = "train_accuracy"

    def __call__(self, model) -> float:
        return self.task.accuracy(outputs_only(model), self.data)


def group(model, names: tuple, mode: str) -> list[Component]:
    """The components named (`L{i}.H{h}`, `L{i}.MLP`, `L{i}.attn` = every head of layer i); a zero-ablation of a
    whole sublayer also owns its output bias (b_O or b_out), so the sublayer's output is 0."""
    parts = {c.name: c for c in structural_components(model)}
    params = dict(model.named_parameters())
    out = []
    for name in names:
        if name.endswith(".attn"):
            i = int(name[1:].split(".")[0])
            out += [c for c in parts.values() if c.kind == "head" and c.layer == i]
            bias = f"blocks.{i}.attn.b_O"
        else:
            out.append(parts[name])
            bias = f"blocks.{parts[name].layer}.mlp.b_out" if parts[name].kind == "mlp" else None
        if mode == "zero" and bias is not None:
            out.append(Component(f"{name}.bias", "bias", out[-1].layer,
                                 {bias: torch.ones_like(params[bias], dtype=torch.bool)}, []))
    return out


@dataclasses.dataclass(frozen=True)
class TrainedJob:
    """One program's trained-model ablations (picklable)."""

    program: str
    cfg: TrainedConfig


def _prefixed(masks: dict, prefix: str = "inner.") -> dict:
    return {prefix + k: v for k, v in masks.items()}


def run_trained(job: TrainedJob) -> dict:
    """Trains, checks and ablates one program's model (module doc); returns {"summary", "rows"}."""
    torch.set_num_threads(1)
    t0 = time.time()
    cfg, st = job.cfg, job.cfg.estimate
    spec = registry.get(job.program)
    compiled = spec.compile()
    tr, va, te = generators.splits(spec, cfg.sizes, seed=cfg.train.seed)
    data = [labelled_tensors(spec, s, compiled) for s in (tr, va, te)]
    if spec.numerical:
        data = [(i, y.double(), m) for i, y, m in data]
    train_data, val_data, test_data = data
    task = sequence_task(spec.numerical)
    mcfg = ModelConfig.from_compiled(compiled, **dict(cfg.arch))
    model = TrainableTransformer(mcfg, seed=cfg.train.seed).double()
    hist = train(model, task, train_data, val_data, cfg.train, progress=False)
    wd = cfg.train.weight_decay
    reg = regularised(task.loss, wd)
    wrapped = WithSquaredNorm(model)
    pol = polish(wrapped, reg, train_data, cfg.polish_iter)
    summary = {"program": job.program, "model_config": dataclasses.asdict(mcfg),
               "num_params": sum(p.numel() for p in model.parameters()),
               "train_acc": task.accuracy(model, train_data), "val_acc": task.accuracy(model, val_data),
               "test_acc": task.accuracy(model, test_data), "majority_baseline": task.majority_baseline(test_data),
               "adam_final_train_loss": hist.train_loss[-1], "polish": pol}
    summary["learned"] = summary["test_acc"] > summary["majority_baseline"] + 0.05
    ids = train_data[0]
    metric = _TrainAccuracy(task, train_data)
    dataset = TensorDataset(*train_data)

    def own_problem(m):
        with torch.no_grad():
            target = m(ids)
        own = (ids, target, train_data[2])
        return TensorDataset(*own), _Agreement(own, spec.numerical)

    def trained_llc(m, loss_fn, ds, draw, floor, masks=None, g=None):
        est = llc(m, ds, loss_fn, st, nbeta=st.nbeta, draw_metric=draw, draw_floor=floor, param_masks=masks)
        if g is not None:
            bias = gradient_bias(g, st.nbeta, st.localization)
            est["grad_norm"], est["grad_bias"] = g, bias
            if bias > 1:
                est["ok"], est["why"] = False, est["why"] + [
                    f"not a minimum: gradient norm {g:.2g} can move the estimate by up to {bias:.2g}"]
        return est

    rows = []
    acc_w = metric(wrapped)
    full = trained_llc(wrapped, reg, dataset, metric, acc_w - cfg.acc_drop, g=grad_norm(wrapped, reg, train_data))
    own_ds, own_draw = own_problem(model)
    full_own = trained_llc(model, output_match_loss, own_ds, own_draw, 0.99)
    rows.append(_row(job.program, "full model", "", task.accuracy(model, test_data), full, full_own, None, None))
    for name, parts in cfg.ablations:
        for mode in cfg.modes:
            comps = group(model, parts, mode)
            ablated, removed = ablate_components(model, comps, mode, ids if mode == "mean" else None)
            keep = keep_masks(removed)
            a = b = naive = None
            wanted = cfg.quantities if mode == "zero" else cfg.mean_quantities
            if "a" in wanted:
                ds, draw = own_problem(ablated)
                a = trained_llc(ablated, output_match_loss, ds, draw, 0.99, masks=keep)
            w_abl = WithSquaredNorm(ablated)
            if "naive" in wanted:
                naive = trained_llc(w_abl, reg, dataset, metric, metric(w_abl) - cfg.acc_drop,
                                    masks=_prefixed(keep), g=grad_norm(w_abl, reg, train_data))
            acc_ft = math.nan
            if "b" in wanted:
                tuned, ft = finetune(w_abl, reg, train_data, _prefixed(keep), steps=cfg.finetune_steps,
                                     lr=cfg.finetune_lr, polish_iter=cfg.finetune_polish, seed=cfg.train.seed,
                                     batch_size=cfg.train.batch_size)
                b = trained_llc(tuned, reg, dataset, metric, metric(tuned) - cfg.acc_drop, masks=_prefixed(keep),
                                g=ft["grad_norm"])
                acc_ft = task.accuracy(outputs_only(tuned), test_data)
            row = _row(job.program, name, mode, task.accuracy(ablated, test_data), naive, a, b, acc_ft)
            row["removed"] = int(sum(int(m.sum()) for m in removed.values()))
            for key, ref, est in (("change_a", full_own, a), ("change_b", full, b), ("change_naive", full, naive)):
                if est is not None:
                    row[key] = (est["llc_mean"] - ref["llc_mean"]) / abs(ref["llc_mean"]) if ref["llc_mean"] else math.nan
            rows.append(row)
    summary["seconds"] = time.time() - t0
    return {"summary": summary, "rows": rows}


def _row(program, ablation, mode, acc, train_est, own_est, ft_est, acc_ft) -> dict:
    """One table row: the training-loss LLC (intact: at the trained minimum; ablated: 'naive'), the own-output
    LLC (a), the fine-tuned LLC (b), each with its verdict."""
    r = {"program": program, "ablation": ablation, "mode": mode, "test_acc": acc}
    for q, est in (("train", train_est), ("a", own_est), ("b", ft_est)):
        if est is None:
            continue
        r.update({f"llc_{q}": est["llc_mean"], f"llc_{q}_std": est["llc_std"], f"ok_{q}": est["ok"],
                  f"why_{q}": "; ".join(est["why"]), f"sampled_{q}": est["sampled"],
                  f"effective_half_rank_{q}": est["effective_half_rank"], f"grad_norm_{q}": est.get("grad_norm"),
                  f"grad_bias_{q}": est.get("grad_bias")})
    if ft_est is not None:
        r["test_acc_finetuned"] = acc_ft
    return r


def trained_ablations(cfg: TrainedConfig, workers: int, out: Path) -> dict:
    """Runs every program's trained-model job; writes `trained_<program>.csv`; returns program -> result."""
    results = run_jobs(run_trained, [(TrainedJob(p, cfg),) for p in cfg.programs], workers, desc="trained",
                       describe=lambda args, r: f"{args[0].program}: learned {r['summary']['learned']}, "
                                                f"{len(r['rows'])} rows, {r['summary']['seconds']:.0f} s")
    found = {}
    for program, res in zip(cfg.programs, results):
        found[program] = res
        rows = res["rows"]
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(out / f"trained_{program}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    return found
