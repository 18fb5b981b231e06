"""Training with checkpoints, then the LLC at every checkpoint with one fixed, calibrated sampler setting."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from llc_estim import SGLDConfig, SGLDDivergenceError, calibrate, estimate_llc

Batch = tuple


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


@dataclasses.dataclass
class Task:
    """Loss, accuracy and baseline of a supervised task on tensor data (x, y, mask)."""

    loss: Callable[[nn.Module, Batch], torch.Tensor]
    accuracy: Callable[[nn.Module, Batch], float]
    majority_baseline: Callable[[Batch], float]


def sequence_task(numerical: bool, tol: float = 0.02) -> Task:
    """Per-position labels with a mask: cross-entropy on logits, or MSE on the scalar channel."""

    def loss(model, batch):
        ids, y, mask = batch
        out = model(ids)
        if numerical:
            d = (out[..., 0] - y) ** 2
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


def llc_curve(model: nn.Module, task: Task, train_data: Batch, hist: History, sgld: SGLDConfig,
              progress: bool = True) -> dict:
    """The LLC at every checkpoint on training data, with one fixed setting. Divergences are recorded as NaN."""
    from torch.utils.data import TensorDataset

    data = TensorDataset(*train_data)
    probe = copy.deepcopy(model)
    means, stds, chains, acc = [], [], [], []
    for state in tqdm(hist.states, disable=not progress, desc="LLC", leave=False):
        probe.load_state_dict(state)
        try:
            res = estimate_llc(probe, data, task.loss, sgld)
            means.append(res.llc_mean), stds.append(res.llc_std), chains.append(res.llc_per_chain.tolist())
            acc.append(res.diagnostics["mala_acceptance"])
        except SGLDDivergenceError:
            means.append(math.nan), stds.append(math.nan), chains.append([]), acc.append(math.nan)
    return {"llc_mean": means, "llc_std": stds, "llc_per_chain": chains, "acceptance": acc}


def calibrate_on_final(model: nn.Module, task: Task, train_data: Batch, hist: History, base: SGLDConfig,
                       step_sizes) -> tuple:
    """Calibrates on the final checkpoint; the recommended setting is then reused for every checkpoint."""
    from torch.utils.data import TensorDataset

    probe = copy.deepcopy(model)
    probe.load_state_dict(hist.states[-1])
    cal = calibrate(probe, TensorDataset(*train_data), task.loss, base, step_sizes=step_sizes)
    return cal, (cal.recommended or dataclasses.replace(base, step_size=min(step_sizes)))


def lead_lag(llc: list, val_loss: list, max_lag: int = 3, perms: int = 2000, seed: int = 0) -> dict:
    """Cross-correlation of checkpoint-to-checkpoint changes: corr(dLLC[t], dVal[t + lag]).

    A positive lag means the LLC change comes first. Significance: two-sided permutation p-value per lag
    (the LLC changes shuffled), which ignores autocorrelation and is therefore optimistic.
    """
    a, b = np.diff(np.asarray(llc, float)), np.diff(np.asarray(val_loss, float))
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    rng = np.random.default_rng(seed)
    out = {}
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[: len(a) - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[: len(b) + lag])
        if len(x) < 4 or x.std() == 0 or y.std() == 0:
            out[lag] = {"r": math.nan, "p": math.nan, "n": int(len(x))}
            continue
        r = float(np.corrcoef(x, y)[0, 1])
        null = [np.corrcoef(rng.permutation(x), y)[0, 1] for _ in range(perms)]
        p = float((np.sum(np.abs(null) >= abs(r)) + 1) / (perms + 1))
        out[lag] = {"r": r, "p": p, "n": int(len(x))}
    return out


def save_history(path: Path, hist: History, extra: dict) -> None:
    d = {k: v for k, v in dataclasses.asdict(hist).items() if k != "states"}
    path.write_text(json.dumps({**d, **extra}, indent=2, default=float))
