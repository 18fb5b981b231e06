"""Sampler configuration and result types."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from llc_estim.diagnostics import Thresholds
from llc_estim.precondition import Preconditioner

ParamFilter = Union[Callable[[str], bool], Sequence[str], None]


def _positive_finite(name: str, value, allow_zero: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def _count(name: str, value, minimum: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class SGLDConfig:
    """Hyperparameters of one LLC estimate. Record all of them with every number.

    One step in whitened coordinates z (w = w* + S z, S = A^(1/2) for the preconditioner A, identity if None):
    leapfrog_steps = 1 without `metropolis` is (preconditioned) SGLD,
    `z <- z - (eps/2) grad_z U + sqrt(eps) xi` with U = nbeta L_batch + gamma/2 |w - w*|^2;
    with `metropolis` it is a Metropolis-adjusted proposal (MALA for 1 leapfrog step, HMC with step sqrt(eps)
    for more), accepted or rejected on the same batch, so the chain samples the localized posterior exactly
    when the batch is the full data set.

    Attributes:
        step_size: epsilon.
        localization: gamma, strength of the pull towards w*.
        nbeta: inverse temperature times n; None means n / log n with n = the data set's `num_draws` attribute
            when it has one (weighted, deduplicated data), else len(data).
        num_chains: independent chains, run together (vectorised).
        num_draws: post-burn-in iterations whose losses form the estimate.
        num_burnin: iterations discarded first.
        batch_size: minibatch size; None means full batch.
        seed: root seed; chains get child seeds from `numpy.random.SeedSequence`.
        param_filter: predicate on parameter names, or a list of names: only these are sampled (refined LLC).
        param_masks: optional {name: bool tensor of the parameter's shape}; False entries are frozen at w*.
        mala_every: without `metropolis`, compute the MALA acceptance probability every this many steps (0: never).
        preconditioner: a fixed `Preconditioner` over the sampled entries (None: identity).
        metropolis: accept or reject every proposal (exact for full batch).
        leapfrog_steps: leapfrog steps per Metropolis proposal (needs `metropolis` when > 1).
        draw_metric: optional `draw_metric(model) -> float` evaluated on every chain's weights every
            `metric_every` iterations (e.g. the decoded accuracy of a compiled model).
        metric_every: 0 picks about 10 evaluations per run.
        thresholds: the floors behind `diagnostics["trustworthy"]`.
        num_threads: torch threads inside the sampler (small models are fastest with 1); None leaves it alone.
        progress: show a tqdm bar (only when stderr is a terminal).
        compile: run the loss, its gradient, the potential and the plain SGLD update through `torch.compile`.
            Opt-in: the first call with a new model structure or chain count compiles (seconds), and the fused
            kernels round differently, so chains agree with the eager path to rounding (1e-15 relative on the
            tested models), not bit for bit. It pays where per-step overhead dominates (small models: 2x on a
            961-parameter MLP), less where the model's own compute does (1.4x on compiled fractok).
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
    preconditioner: Optional[Preconditioner] = None
    metropolis: bool = False
    leapfrog_steps: int = 1
    draw_metric: Optional[Callable[[Any], float]] = None
    metric_every: int = 0
    thresholds: Thresholds = Thresholds()
    num_threads: Optional[int] = 1
    progress: bool = True
    compile: bool = False

    def __post_init__(self):
        _positive_finite("step_size", self.step_size)
        _positive_finite("localization", self.localization, allow_zero=True)
        if self.nbeta is not None:
            _positive_finite("nbeta", self.nbeta)
        _count("num_chains", self.num_chains, 1)
        _count("num_draws", self.num_draws, 1)
        _count("num_burnin", self.num_burnin, 0)
        _count("seed", self.seed, 0)
        _count("mala_every", self.mala_every, 0)
        _count("leapfrog_steps", self.leapfrog_steps, 1)
        _count("metric_every", self.metric_every, 0)
        if self.batch_size is not None:
            _count("batch_size", self.batch_size, 1)
        if self.leapfrog_steps > 1 and not self.metropolis:
            raise ValueError("leapfrog_steps > 1 (HMC) needs metropolis=True")
        if self.preconditioner is not None and not isinstance(self.preconditioner, Preconditioner):
            raise TypeError(f"preconditioner must be a llc_estim Preconditioner, got {type(self.preconditioner)}")
        if self.draw_metric is not None and not callable(self.draw_metric):
            raise TypeError("draw_metric must be callable: draw_metric(model) -> float")
        if self.num_threads is not None:
            _count("num_threads", self.num_threads, 1)

    def resolved_nbeta(self, n: int) -> float:
        """nbeta, defaulting to n / log n."""
        if self.nbeta is not None:
            return float(self.nbeta)
        if n < 2:
            raise ValueError("nbeta = n / log n needs at least 2 data points")
        return n / math.log(n)

    def to_dict(self) -> dict:
        """Every hyperparameter in JSON-friendly form."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        pf = d["param_filter"]
        d["param_filter"] = None if pf is None else (list(pf) if not callable(pf) else getattr(pf, "__name__", "fn"))
        masks = self.param_masks
        d["param_masks"] = None if masks is None else {k: int(v.sum()) for k, v in masks.items()}
        d["preconditioner"] = None if self.preconditioner is None else self.preconditioner.describe()
        d["draw_metric"] = None if self.draw_metric is None else getattr(self.draw_metric, "__name__", "fn")
        d["thresholds"] = dataclasses.asdict(self.thresholds)
        return d


class SGLDDivergenceError(RuntimeError):
    """The sampler produced a NaN or infinite loss."""


@dataclasses.dataclass
class LLCResult:
    """An LLC estimate with everything needed to judge it.

    `llc_per_chain[c] == nbeta * (mean(loss_trace[c]) - init_loss)` exactly. `diagnostics["trustworthy"]` and
    `diagnostics["warnings"]` give the verdict; `choices` records what `auto_llc` decided (empty otherwise).
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
    acceptance_trace: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    metric_trace: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    choices: dict = dataclasses.field(default_factory=dict)
    curvature: Any = None  # auto_llc: the Hessian at w* (a `Curvature`), reusable across calls

    @property
    def llc_mean(self) -> float:
        return float(np.mean(self.llc_per_chain))

    @property
    def llc_std(self) -> float:
        return float(np.std(self.llc_per_chain, ddof=1)) if len(self.llc_per_chain) > 1 else float("nan")

    @property
    def trustworthy(self) -> bool:
        return bool(self.diagnostics.get("trustworthy", False))

    def to_dict(self) -> dict:
        """devinterp-style keys plus the diagnostics, the choices and the hyperparameters."""
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
        d.update({f"choices/{k}": v for k, v in self.choices.items()})
        d.update({f"config/{k}": v for k, v in self.config.to_dict().items()})
        return d
