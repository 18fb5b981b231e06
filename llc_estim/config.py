"""Sampler configuration and result types."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

ParamFilter = Union[Callable[[str], bool], Sequence[str], None]


@dataclasses.dataclass(frozen=True)
class SGLDConfig:
    """Hyperparameters of one LLC estimate. Record all of them with every number.

    Attributes:
        step_size: SGLD step size epsilon.
        localization: gamma, strength of the pull towards w*.
        nbeta: inverse temperature times n; None means n / log n with n = len(data).
        num_chains: independent chains, run together (vectorised).
        num_draws: post-burn-in steps whose losses form the estimate.
        num_burnin: steps discarded first.
        batch_size: minibatch size; None means full batch (every step sees the whole data set).
        seed: root seed; chains get child seeds from `numpy.random.SeedSequence`.
        param_filter: predicate on parameter names, or a list of names: only these are sampled (refined LLC).
        param_masks: optional {name: bool tensor of the parameter's shape}; entries that are False are frozen at
            w* (no drift, no noise) and not counted as sampled. For ablations that delete part of a tensor.
        mala_every: compute the MALA acceptance probability every this many steps (0: never). It costs one more
            forward+backward at the proposal, on the same minibatch.
        num_threads: torch threads inside the sampler (small models are fastest with 1); None leaves it alone.
        progress: show a tqdm bar (only when stderr is a terminal).
    """

    step_size: float
    localization: float = 1.0
    nbeta: Optional[float] = None
    num_chains: int = 4
    num_draws: int = 200
    num_burnin: int = 100
    batch_size: Optional[int] = None
    seed: int = 0
    param_filter: ParamFilter = None
    param_masks: Optional[Mapping[str, Any]] = None
    mala_every: int = 10
    num_threads: Optional[int] = 1
    progress: bool = True

    def __post_init__(self):
        if not self.step_size > 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}")
        if self.localization < 0:
            raise ValueError("localization must be >= 0")
        if self.num_chains < 1 or self.num_draws < 1 or self.num_burnin < 0:
            raise ValueError("need num_chains >= 1, num_draws >= 1, num_burnin >= 0")
        if self.nbeta is not None and not self.nbeta > 0:
            raise ValueError("nbeta must be positive")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    def resolved_nbeta(self, n: int) -> float:
        """nbeta, defaulting to n / log n."""
        if self.nbeta is not None:
            return float(self.nbeta)
        if n < 2:
            raise ValueError("nbeta = n / log n needs at least 2 data points")
        return n / math.log(n)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        pf = d["param_filter"]
        d["param_filter"] = None if pf is None else (list(pf) if not callable(pf) else getattr(pf, "__name__", "fn"))
        masks = self.param_masks
        d["param_masks"] = None if masks is None else {k: int(v.sum()) for k, v in masks.items()}
        return d


class SGLDDivergenceError(RuntimeError):
    """The sampler produced a NaN or infinite loss."""


@dataclasses.dataclass
class LLCResult:
    """An LLC estimate with everything needed to judge it.

    `llc_per_chain[c] == nbeta * (mean(loss_trace[c]) - init_loss)` exactly.
    """

    llc_per_chain: np.ndarray
    loss_trace: np.ndarray  # [num_chains, num_draws], post-burn-in only
    burnin_trace: np.ndarray  # [num_chains, num_burnin]
    init_loss: float
    nbeta: float
    n: int
    num_sampled_params: int
    config: SGLDConfig
    diagnostics: dict
    param_names: list

    @property
    def llc_mean(self) -> float:
        return float(np.mean(self.llc_per_chain))

    @property
    def llc_std(self) -> float:
        return float(np.std(self.llc_per_chain, ddof=1)) if len(self.llc_per_chain) > 1 else float("nan")

    def to_dict(self) -> dict:
        """devinterp-style keys plus the diagnostics and hyperparameters."""
        d = {
            "llc/mean": self.llc_mean,
            "llc/std": self.llc_std,
            "llc/per_chain": self.llc_per_chain.tolist(),
            "loss/init": self.init_loss,
            "nbeta": self.nbeta,
            "n": self.n,
            "num_sampled_params": self.num_sampled_params,
        }
        d.update({f"diagnostics/{k}": v for k, v in self.diagnostics.items()})
        d.update({f"config/{k}": v for k, v in self.config.to_dict().items()})
        return d
