"""Per-program work of the complexity study: calibrate, then estimate over seeds, for one compiled program.

Each job is a small frozen dataclass with a `run()` method and is self-contained (it builds its own teacher
problem), so jobs can run in separate worker processes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import ClassVar

import numpy as np
import torch

from datasets.teacher import TeacherProblem, teacher_loss, teacher_problem
from llc_estim import SGLDConfig, SGLDDivergenceError, calibrate, estimate_llc
from rasp_models import registry
from rasp_models.base import ProgramSpec, descriptors

EMBED = ("token_embed", "pos_embed")
DATA_SEED = 1234  # generator seed of every teacher data set of the study


def not_embedding(name: str) -> bool:
    """Parameter filter: everything but the token and position embeddings."""
    return name not in EMBED


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """Sampler settings shared by every program (the step size is calibrated per program).

    Attributes:
        num_sequences: n, generated sequences of the teacher data.
        seeds: sampler seeds of the estimates with all parameters.
        base: the sampler settings (its step size is replaced by the calibrated one).
        step_grid: step sizes tried by the calibration.
        calib_chains, calib_draws, calib_burnin: the calibration runs' chains, draws and burn-in.
        no_embed_seeds: sampler seeds of the estimates without the embeddings.
    """

    num_sequences: int
    seeds: tuple
    base: SGLDConfig
    step_grid: tuple
    calib_chains: int
    calib_draws: int
    calib_burnin: int
    no_embed_seeds: tuple


@dataclasses.dataclass(frozen=True)
class Variant:
    """A size variant of a registered program: `registry.variant(family, **dict(size))`."""

    family: str
    size: tuple  # (name, value) pairs

    @classmethod
    def of(cls, family: str, **size) -> "Variant":
        """`Variant.of("fractok", letters=5, max_seq_len=5)`."""
        return cls(family, tuple(size.items()))

    def spec(self) -> ProgramSpec:
        """The sized program."""
        return registry.variant(self.family, **dict(self.size))


def problem(spec: ProgramSpec, n: int, dtype: torch.dtype = torch.float64) -> TeacherProblem:
    """The study's teacher problem of `spec`: n sequences drawn with `DATA_SEED`, one item per draw."""
    return teacher_problem(spec, n, seed=DATA_SEED, dtype=dtype, dedup=False)


def _summary(res) -> dict:
    return {"llc_mean": res.llc_mean, "llc_std": res.llc_std, "llc_per_chain": res.llc_per_chain.tolist(),
            "acceptance": res.diagnostics["mala_acceptance"], "frac_below_init": res.diagnostics["frac_below_init_loss"],
            "rhat": res.diagnostics["rhat_loss"], "nbeta": res.nbeta, "num_sampled_params": res.num_sampled_params}


def _estimate_over_seeds(problem: TeacherProblem, cfg: SGLDConfig, seeds, param_filter=None) -> dict:
    runs, trace = [], None
    for seed in seeds:
        try:
            res = estimate_llc(problem.model, problem.data, problem.loss_fn,
                               dataclasses.replace(cfg, seed=seed, param_filter=param_filter, progress=False))
        except SGLDDivergenceError as err:
            runs.append({"diverged": True, "error": str(err)})
            continue
        chains = res.llc_per_chain
        med = float(np.median(np.abs(chains)))
        exploded = bool(np.any(np.abs(chains) > 10 * med + 10))
        if exploded:  # a chain ran away without producing NaN: treated like a divergence
            runs.append({"diverged": True, "error": f"exploding chain: per-chain LLC {chains.tolist()}"})
            continue
        runs.append({"diverged": False, **_summary(res)})
        if trace is None:
            trace = np.concatenate([res.burnin_trace, res.loss_trace], axis=1)
    ok = [r for r in runs if not r["diverged"]]
    seed_means = [r["llc_mean"] for r in ok]
    return {
        "runs": runs,
        "llc_mean": float(np.mean(seed_means)) if ok else math.nan,
        "llc_std_seeds": float(np.std(seed_means, ddof=1)) if len(ok) > 1 else math.nan,
        "llc_std_chains": float(np.mean([r["llc_std"] for r in ok])) if ok else math.nan,
        "acceptance": float(np.mean([r["acceptance"] for r in ok])) if ok else math.nan,
        "frac_below_init": float(np.mean([r["frac_below_init"] for r in ok])) if ok else math.nan,
        "num_diverged": len(runs) - len(ok),
        "trace": trace.tolist() if trace is not None else None,
    }


def run_program(spec: ProgramSpec, st: StudySettings) -> dict:
    """Calibrate the step size on this program, then estimate the LLC over seeds for both parameter sets."""
    torch.set_num_threads(1)
    t0 = time.time()
    prob = problem(spec, st.num_sequences)
    calib_base = dataclasses.replace(st.base, num_chains=st.calib_chains, num_draws=st.calib_draws,
                                     num_burnin=st.calib_burnin, progress=False)
    cal = calibrate(prob.model, prob.data, prob.loss_fn, calib_base, step_sizes=st.step_grid)
    out = {"program": spec.name, "descriptors": _descriptors(spec), "n": st.num_sequences,
           "calibration": cal.table, "calibration_rule": cal.rule, "calibration_flat": cal.flat,
           "largest_stable_step": cal.largest_stable_step}
    if cal.recommended is None:
        out.update(step_size=math.nan, all=None, no_embed=None, seconds=time.time() - t0)
        return out
    # The short calibration runs can miss instabilities that the full runs hit: if any full run diverges or has an
    # exploding chain, step down the grid and redo all of them (every reduction is recorded).
    candidates = sorted((e for e in st.step_grid if e <= cal.recommended.step_size), reverse=True)
    out["step_reductions"] = []
    for eps in candidates:
        cfg = dataclasses.replace(st.base, step_size=eps)
        every = _estimate_over_seeds(prob, cfg, st.seeds)
        no_embed = _estimate_over_seeds(prob, cfg, st.no_embed_seeds, param_filter=not_embedding)
        if every["num_diverged"] == 0 and no_embed["num_diverged"] == 0:
            break
        out["step_reductions"].append({"step_size": eps, "errors": [r.get("error") for r in every["runs"]
                                                                     + no_embed["runs"] if r["diverged"]]})
    out.update(step_size=eps, all=every, no_embed=no_embed, seconds=time.time() - t0)
    return out


def _descriptors(spec: ProgramSpec) -> dict:
    d = descriptors(spec)
    d["half_params"] = d["num_params"] / 2
    return d


def _size(spec: ProgramSpec) -> int:
    """Rough cost of one estimate: MLP width times residual width of the compiled model."""
    model = spec.compile()
    return model.model_config.mlp_hidden_size * len(model.residual_labels)


@dataclasses.dataclass(frozen=True)
class ProgramJob:
    """Calibrate, then estimate over every seed, one registered program."""

    kind: ClassVar[str] = "program"
    program: str
    settings: StudySettings

    def cost(self) -> float:
        """Scheduling cost (costliest first)."""
        return _size(registry.get(self.program)) * len(self.settings.seeds)

    def run(self) -> dict:
        return run_program(registry.get(self.program), self.settings)


@dataclasses.dataclass(frozen=True)
class SweepJob:
    """Calibrate, then estimate with the first seed only, one size variant."""

    kind: ClassVar[str] = "sweep"
    variant: Variant
    settings: StudySettings

    def cost(self) -> float:
        """Scheduling cost (costliest first)."""
        return _size(self.variant.spec())

    def run(self) -> dict:
        one_seed = dataclasses.replace(self.settings, seeds=self.settings.seeds[:1], no_embed_seeds=())
        return {**run_program(self.variant.spec(), one_seed), "family": self.variant.family,
                "size": dict(self.variant.size)}


@dataclasses.dataclass(frozen=True)
class CommonJob:
    """One estimate at the common step size (identical hyperparameters for every program)."""

    kind: ClassVar[str] = "common"
    program: str
    settings: StudySettings
    step_size: float

    def run(self) -> dict:
        torch.set_num_threads(1)
        prob = problem(registry.get(self.program), self.settings.num_sequences)
        cfg = dataclasses.replace(self.settings.base, step_size=self.step_size)
        return {"program": self.program, "step_size": self.step_size,
                **_estimate_over_seeds(prob, cfg, self.settings.seeds[:1])}


@dataclasses.dataclass(frozen=True)
class ChecksJob:
    """Loss-rescaling invariance on two programs, and float32 vs float64 on fractok."""

    kind: ClassVar[str] = "checks"
    settings: StudySettings
    step_sizes: tuple  # (program, calibrated step size) pairs

    def run(self) -> dict:
        return run_checks(self.settings, dict(self.step_sizes))


def run_job(job) -> dict:
    """Runs one job (a module-level function, so worker processes can call it)."""
    return job.run()


def run_checks(st: StudySettings, step_sizes: dict) -> dict:
    """Loss-rescaling invariance on fractok and histogram, and float32 vs float64 on fractok."""
    torch.set_num_threads(1)
    out: dict = {"rescaling": {}, "dtype": {}}
    for name in ("fractok", "histogram"):
        eps = step_sizes.get(name)
        if eps is None or not math.isfinite(eps):
            continue
        prob = problem(registry.get(name), st.num_sequences)
        cfg = dataclasses.replace(st.base, step_size=eps, nbeta=prob.nbeta, progress=False)
        try:
            a = estimate_llc(prob.model, prob.data, teacher_loss, cfg)
            b = estimate_llc(prob.model, prob.data, lambda m, bt: 10.0 * teacher_loss(m, bt),
                             dataclasses.replace(cfg, nbeta=prob.nbeta / 10))
        except SGLDDivergenceError as err:
            out["rescaling"][name] = {"diverged": str(err)}
            continue
        out["rescaling"][name] = {"loss_x1": a.llc_mean, "loss_x10_nbeta_div10": b.llc_mean,
                                  "rel_diff": abs(a.llc_mean - b.llc_mean) / abs(a.llc_mean), "step_size": eps}
    eps = step_sizes.get("fractok")
    if eps is not None and math.isfinite(eps):
        for dtype in (torch.float64, torch.float32):
            prob = problem(registry.get("fractok"), st.num_sequences, dtype)
            key = str(dtype).replace("torch.", "")
            try:
                res = estimate_llc(prob.model, prob.data, prob.loss_fn,
                                   dataclasses.replace(st.base, step_size=eps, progress=False))
                out["dtype"][key] = {"llc_mean": res.llc_mean, "llc_std": res.llc_std}
            except SGLDDivergenceError as err:
                out["dtype"][key] = {"diverged": str(err)}
    return out
