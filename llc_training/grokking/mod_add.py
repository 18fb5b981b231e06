"""Modular addition, the grokking anchor (Timaeus' devinterp example): its data and training one seed.

All p^2 pairs (a, b) -> (a + b) mod p, split at random; `ModAddMLP` (in `llc_training.model`) is the model.
Whether a run groks within a fixed number of steps depends on the seed, so a study trains several seeds and reports
every one (`train_seed`); `train_until_grokked` keeps the older "first seed that groks" search.
The study around it is `studies.grokking`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

from llc_training.model import ModAddMLP
from llc_training.train import History, TrainConfig, classification_task, train


def data(p: int, train_frac: float, seed: int):
    """All p^2 pairs (a, b) -> (a + b) mod p, split at random."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], 1)
    y = (x[:, 0] + x[:, 1]) % p
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    k = int(train_frac * len(x))
    return (x[perm[:k]], y[perm[:k]]), (x[perm[k:]], y[perm[k:]])


@dataclasses.dataclass
class GrokRun:
    """One trained seed (or, from `train_until_grokked`, the first seed that grokked), with its model, history,
    data and every seed's result.

    Attributes:
        seed: the seed used (model init, data split and batch order).
        model: the trained model (at the end of training).
        hist: its training history (checkpoint states included).
        train_data, test_data: its split.
        tried: seed -> final test accuracy, for every seed tried.
    """

    seed: int
    model: ModAddMLP
    hist: History
    train_data: tuple
    test_data: tuple
    tried: dict


def train_seed(p: int, train_frac: float, train_cfg: TrainConfig, seed: int, d: int = 12, h: int = 48) -> GrokRun:
    """Trains `ModAddMLP(p, d, h, seed=seed)` on `data(p, train_frac, seed)` with `train_cfg` (its seed replaced)."""
    train_data, test_data = data(p, train_frac, seed)
    model = ModAddMLP(p, d, h, seed=seed)
    hist = train(model, classification_task(), train_data, test_data, dataclasses.replace(train_cfg, seed=seed),
                 progress=False)
    return GrokRun(seed, model, hist, train_data, test_data, {seed: hist.val_acc[-1]})


def train_until_grokked(p: int, train_frac: float, train_cfg: TrainConfig, seeds: tuple, target: float = 0.99,
                        on_seed: Optional[Callable[[int, float], None]] = None) -> GrokRun:
    """Trains seeds in turn, stopping at the first whose final test accuracy reaches `target`; `on_seed(seed,
    test_acc)` is called after each."""
    tried = {}
    for seed in seeds:
        run = train_seed(p, train_frac, train_cfg, seed)
        tried[seed] = run.hist.val_acc[-1]
        if on_seed:
            on_seed(seed, run.hist.val_acc[-1])
        if run.hist.val_acc[-1] >= target:
            break
    return dataclasses.replace(run, tried=tried)
