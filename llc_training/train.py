"""Training with checkpoints, and the LLC at every checkpoint.

The LLC is only meaningful at a local minimum of the loss it uses. Training with Adam and L2 weight decay `wd`
(`optimizer="adam"`: `wd * w` added to the gradient) makes the *regularised* training loss
L(w) + (wd / 2) |w|^2 the loss whose stationary points the optimiser seeks, and unlike cross-entropy alone it has a
minimum at finite weights; `llc_training.objectives` builds that loss for the estimator and checks how close a
checkpoint is to its minimum. (AdamW's decoupled decay has no such loss: its fixed points are not minima of
L + c |w|^2.)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from llc_estim import LLCWarning, SGLDConfig, SGLDDivergenceError, calibrate, estimate_llc, trace_record
from llc_training.objectives import Batch, WithSquaredNorm, grad_norm, outputs_only


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule. `checkpoints` are the steps after which the model is saved and measured."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    checkpoints: tuple
    seed: int = 0
    optimizer: str = "adamw"  # "adamw" (decoupled decay) or "adam" (L2 in the gradient)
    betas: tuple = (0.9, 0.98)

    @staticmethod
    def evenly(steps: int, count: int) -> tuple:
        """`count` checkpoint steps spread evenly over training, the last at `steps`."""
        return tuple(sorted({max(1, round(steps * (i + 1) / count)) for i in range(count)}))

    @staticmethod
    def log_and_even(steps: int, n_log: int, n_even: int, first: int = 10, extra: tuple = ()) -> tuple:
        """Dense where learning is fast: `n_log` steps log-spaced from `first` to `steps`, merged with `n_even`
        evenly spaced ones (so late, slow changes are also seen at a regular spacing), plus `extra` steps."""
        even = set(TrainConfig.evenly(steps, n_even)) if n_even else set()
        log = {int(round(v)) for v in (np.geomspace(first, steps, n_log) if n_log > 0 else [])}
        log = {v for v in log if not any(abs(v - e) <= 0.05 * e for e in even)}  # no near-duplicates
        return tuple(sorted(log | even | {int(e) for e in extra if 0 < e <= steps}))


@dataclasses.dataclass
class Task:
    """Loss, accuracy and baseline of a supervised task on tensor data (x, y, mask)."""

    loss: Callable[[nn.Module, Batch], torch.Tensor]
    accuracy: Callable[[nn.Module, Batch], float]
    majority_baseline: Callable[[Batch], float]


def sequence_task(numerical: bool, tol: float = 0.02, loss_kind: str = "ce") -> Task:
    """Per-position labels with a mask: cross-entropy on logits (`loss_kind="ce"`) or the mean squared distance
    between the outputs and the one-hot labels (`"mse_onehot"`, a loss that has a minimum at finite weights and
    is zero at a compiled model's readout), or MSE on the scalar channel for numerical labels."""
    if loss_kind not in ("ce", "mse_onehot"):
        raise ValueError(f"loss_kind must be 'ce' or 'mse_onehot', got {loss_kind!r}")

    def loss(model, batch):
        ids, y, mask = batch
        out = model(ids)
        if numerical:
            d = (out[..., 0] - y) ** 2
            return (d * mask).sum() / mask.sum()
        if loss_kind == "mse_onehot":
            onehot = nn.functional.one_hot(torch.where(mask, y, 0), out.shape[-1]).to(out.dtype)
            d = ((out - onehot) ** 2).sum(-1)
            mask = mask.to(d.dtype)
            return (d * mask).sum() / mask.sum()
        # no boolean indexing: the sampler vmaps this loss over chains
        ce = nn.functional.cross_entropy(out.flatten(0, 1), torch.where(mask, y, 0).flatten(), reduction="none")
        mask = mask.to(ce.dtype)
        return (ce.view_as(mask) * mask).sum() / mask.sum()

    @torch.no_grad()
    def accuracy(model, batch):
        ids, y, mask = batch
        out = model(ids)
        ok = (out[..., 0] - y).abs() < tol if numerical else out.argmax(-1) == y
        return float(ok[mask].double().mean())

    def baseline(batch):
        _, y, mask = batch
        vals = y[mask]
        if numerical:  # the best constant: the most frequent target value, accuracy within tol
            _, counts = torch.unique(torch.round(vals.double() * 1e6), return_counts=True)
            mode = torch.unique(torch.round(vals.double() * 1e6))[counts.argmax()] / 1e6
            return float(((vals.double() - mode).abs() < tol).double().mean())
        return float(torch.bincount(vals).max() / len(vals))

    return Task(loss, accuracy, baseline)


def classification_task() -> Task:
    """Inputs x, class labels y (no mask): cross-entropy."""

    def loss(model, batch):
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    @torch.no_grad()
    def accuracy(model, batch):
        return float((model(batch[0]).argmax(-1) == batch[1]).double().mean())

    def baseline(batch):
        return float(torch.bincount(batch[1]).max() / len(batch[1]))

    return Task(loss, accuracy, baseline)


@dataclasses.dataclass
class History:
    steps: list = dataclasses.field(default_factory=list)
    train_loss: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    train_acc: list = dataclasses.field(default_factory=list)
    val_acc: list = dataclasses.field(default_factory=list)
    states: list = dataclasses.field(default_factory=list)  # state_dicts at the checkpoints


def _optimizer(model, cfg: TrainConfig):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _take(data: Batch, idx) -> Batch:
    return tuple(t[idx] for t in data)


def train(model: nn.Module, task: Task, train_data: Batch, val_data: Batch, cfg: TrainConfig,
          checkpoint_dir: Optional[Path] = None, resume: bool = False, progress: bool = True) -> History:
    """Trains with minibatches drawn from a seeded generator; records metrics and states at the checkpoints.

    With `checkpoint_dir`, every checkpoint is saved (model, optimiser, history, config); `resume=True` continues
    from the latest one there, giving the same curve as an uninterrupted run.
    """
    opt = _optimizer(model, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    hist, start = History(), 0
    if resume and checkpoint_dir is not None and (checkpoint_dir / "latest.pt").exists():
        ck = torch.load(checkpoint_dir / "latest.pt", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        hist, start = ck["history"], ck["step"]
    n = len(train_data[0])
    todo = set(cfg.checkpoints)
    bar = tqdm(range(start, cfg.steps), disable=not progress, desc="train", leave=False)
    for step in bar:
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        model.train()
        loss = task.loss(model, _take(train_data, idx))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss {float(loss)} at step {step}; lower the learning rate")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step + 1 in todo:
            model.eval()
            with torch.no_grad():
                hist.steps.append(step + 1)
                hist.train_loss.append(float(task.loss(model, train_data)))
                hist.val_loss.append(float(task.loss(model, val_data)))
            hist.train_acc.append(task.accuracy(model, train_data))
            hist.val_acc.append(task.accuracy(model, val_data))
            hist.states.append(copy.deepcopy(model.state_dict()))
            if checkpoint_dir is not None:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                            "history": hist, "step": step + 1, "config": dataclasses.asdict(cfg)},
                           checkpoint_dir / "latest.pt")
    return hist


def summarize_result(res) -> dict:
    """The numbers and the verdict of one `LLCResult`, JSON-friendly."""
    d = res.diagnostics
    return {"llc_mean": res.llc_mean, "llc_std": res.llc_std, "llc_per_chain": res.llc_per_chain.tolist(),
            "trustworthy": bool(res.trustworthy), "warnings": list(d.get("warnings", [])),
            "acceptance": d.get("mala_acceptance", math.nan), "rhat": d.get("rhat_loss", math.nan),
            "frac_below_init": d.get("frac_below_init_loss", math.nan),
            "draw_metric_min": d.get("draw_metric_min", math.nan), "draw_metric_mean": d.get("draw_metric_mean", math.nan),
            "init_loss": res.init_loss, "nbeta": res.nbeta, "step_size": res.config.step_size}


def llc_curve(model: nn.Module, task: Task, train_data: Batch, hist: History, sgld: SGLDConfig,
              progress: bool = True, loss_fn: Optional[Callable] = None, dtype: Optional[torch.dtype] = None,
              draw_metric_floor: Optional[float] = None, grad_loss: Optional[Callable] = None) -> dict:
    """The LLC at every checkpoint on training data, with one fixed setting, each with its verdict.

    Args:
        loss_fn: the loss the LLC uses (default `task.loss`); with a `WithSquaredNorm` model, e.g. `regularised`.
        dtype: estimate in this dtype (e.g. torch.float64); the checkpoints are converted.
        draw_metric_floor: when given, the train accuracy of the draws is tracked and a draw whose accuracy falls
            more than this below the checkpoint's own flags the estimate (the draws left its basin).
        grad_loss: when given, the full-batch gradient norm of this loss at every checkpoint is recorded
            (how far the checkpoint is from a minimum of the loss the LLC uses).

    Divergences are recorded as NaN with the reason. Returns lists over checkpoints: llc_mean, llc_std,
    llc_per_chain, acceptance, trustworthy, warnings, draw_acc_min, train_acc (at w*), grad_norm, and trace (each
    estimate's `llc_estim.trace_record`, thinned to 100 points per chain; None where it diverged).
    """
    from torch.utils.data import TensorDataset

    loss_fn = loss_fn or task.loss
    data = TensorDataset(*train_data)
    probe = copy.deepcopy(model)
    if dtype is not None:
        probe = probe.to(dtype)
    cast = _caster(dtype)
    out = {k: [] for k in ("llc_mean", "llc_std", "llc_per_chain", "acceptance", "trustworthy", "warnings",
                           "draw_acc_min", "train_acc", "grad_norm", "trace")}
    for state in tqdm(hist.states, disable=not progress, desc="LLC", leave=False):
        _load(probe, state, dtype)
        acc0 = task.accuracy(outputs_only(probe), cast(train_data))
        cfg = sgld
        if draw_metric_floor is not None:
            cfg = dataclasses.replace(sgld, draw_metric=_accuracy_metric(task, cast(train_data)),
                                      thresholds=dataclasses.replace(sgld.thresholds,
                                                                     draw_metric_min=acc0 - draw_metric_floor))
        out["train_acc"].append(acc0)
        out["grad_norm"].append(grad_norm(probe, grad_loss, cast(train_data)) if grad_loss else math.nan)
        try:
            with warnings.catch_warnings():  # the verdict is recorded with the number
                warnings.simplefilter("ignore", LLCWarning)
                res = estimate_llc(probe, data if dtype is None else TensorDataset(*cast(train_data)), loss_fn, cfg)
            s = summarize_result(res)
            for k in ("llc_mean", "llc_std", "llc_per_chain", "acceptance", "trustworthy", "warnings"):
                out[k].append(s[k])
            out["draw_acc_min"].append(s["draw_metric_min"])
            out["trace"].append(trace_record(res, max_points=100))
        except SGLDDivergenceError as err:
            for k, v in (("llc_mean", math.nan), ("llc_std", math.nan), ("llc_per_chain", []),
                         ("acceptance", math.nan), ("trustworthy", False), ("warnings", [f"diverged: {err}"]),
                         ("draw_acc_min", math.nan), ("trace", None)):
                out[k].append(v)
    return out


def _caster(dtype):
    """Converts the floating tensors of a batch to `dtype` (integers, booleans and labels untouched)."""
    if dtype is None:
        return lambda batch: batch
    return lambda batch: tuple(t.to(dtype) if torch.is_floating_point(t) else t for t in batch)


def _load(model: nn.Module, state: dict, dtype) -> None:
    """Loads a checkpoint into `model` (or into the `inner` of a `WithSquaredNorm`), converting to `dtype`."""
    target = model.inner if isinstance(model, WithSquaredNorm) and not any(k.startswith("inner.") for k in state) \
        else model
    target.load_state_dict({k: (v.to(dtype) if dtype is not None and torch.is_floating_point(v) else v)
                            for k, v in state.items()})


class _accuracy_metric:
    """Draw metric: the task's accuracy of a (possibly wrapped) model on fixed data."""

    def __init__(self, task: Task, data: Batch):
        self.task, self.data = task, data
        self.__name__ = "train_accuracy"

    def __call__(self, model) -> float:
        return self.task.accuracy(outputs_only(model), self.data)


def calibrate_on_final(model: nn.Module, task: Task, train_data: Batch, hist: History, base: SGLDConfig,
                       step_sizes) -> tuple:
    """Calibrates on the final checkpoint; the recommended setting is then reused for every checkpoint."""
    from torch.utils.data import TensorDataset

    probe = copy.deepcopy(model)
    probe.load_state_dict(hist.states[-1])
    cal = calibrate(probe, TensorDataset(*train_data), task.loss, base, step_sizes=step_sizes)
    return cal, (cal.recommended or dataclasses.replace(base, step_size=min(step_sizes)))


def save_history(path: Path, hist: History, extra: dict) -> None:
    d = {k: v for k, v in dataclasses.asdict(hist).items() if k != "states"}
    path.write_text(json.dumps({**d, **extra}, indent=2, default=float))
