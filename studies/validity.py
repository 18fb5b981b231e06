"""Is a compiled model's LLC estimate valid? The five checks of the research protocol, run on one program.

For a program compiled at a given sharpness, with n teacher draws and inverse temperature beta per draw
(nbeta = n * beta), `validate` estimates the LLC with `auto_llc` and checks:
  1. basin: every chain's weights still decode like the compiled model on >= 99% of the teacher positions, and
     the mean draw teacher loss is <= 0.05;
  2. nbeta: 4x the teacher data (so 4x nbeta at the same beta) changes the estimate by <= 20%;
  3. reparametrisation: MLP x10 (W_in, b_in x10, W_out / 10) and QK x0.1 (W_Q, b_Q x0.1, W_K, b_K x10), which leave
     the function and the true LLC unchanged, change the estimate by <= 20% (n/a where a model has no MLP or head);
  4. bounds: 0.85 x the effective half-rank <= LLC <= d/2 (Hessian at w*, same nbeta and gamma);
  5. R-hat < 1.1, and the estimator's own verdict (acceptance, trend, negative LLC) is clean.
`valid` is the conjunction. An estimate that fails keeps its number and says which checks it failed.

nbeta = n * beta rather than n / log n: a compiled model's curvatures span 1e-5 ... 1e4 and its walls (ReLU kinks,
discretising MLPs, saturated softmax) sit close, so a valid estimate needs a strong localization gamma and
nbeta * h >> gamma for the curvatures that count; n / log n would need impossibly many sequences. 4x the data at
the same beta is the protocol's "4x the teacher data" check.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Optional

import numpy as np
import torch

from datasets.teacher import TeacherProblem, teacher_problem
from llc_estim import AutoSettings, LLCWarning, auto_llc, trace_record
from rasp_models.base import ProgramSpec, Sharpness
from studies.runner import is_quiet
from tracr.haiku_to_pytorch import to_torch
from tracr.torch_components import rescaled

TOLERANCE = 0.2  # relative change allowed by the nbeta and reparametrisation checks
CHECKS = ("basin", "nbeta", "reparam", "bounds", "rhat")


@dataclasses.dataclass(frozen=True)
class ValiditySettings:
    """Everything that fixes an estimate and its checks (recorded with every row).

    Attributes:
        n: teacher sequences drawn (deduplicated, weighted).
        beta: inverse temperature per draw; nbeta = n * beta.
        localization: gamma.
        max_steps: `auto_llc` gradient evaluations per chain.
        num_chains: chains per estimate.
        seed: sampler seed (the data seed is the teacher problem's default).
        sharpness: the compiler's knobs.
        max_params: programs with more parameters get no estimate (the reason says so).
        checks: run the four extra estimates (False: the base estimate only, checks 2-3 not run).
        auto: `auto_llc`'s algorithm settings.
        escalate: inside `validate`, an estimate the estimator flags is rerun at twice its budget, up to this many
            times (0: never). Longer chains are the standard remedy for R-hat and trend flags; the rerun replaces
            the flagged estimate only as a whole and records `max_steps_used` and `escalations`.
    """

    n: int = 4096
    beta: float = 1e7
    localization: float = 1e6
    max_steps: int = 3000
    num_chains: int = 4
    seed: int = 0
    sharpness: Sharpness = Sharpness(relu_margin=0.5)
    max_params: int = 100_000
    checks: bool = True
    auto: AutoSettings = AutoSettings()
    escalate: int = 0

    @property
    def nbeta(self) -> float:
        return self.n * self.beta

    def line(self) -> str:
        """The settings that place an estimate, for figure titles: gamma, nbeta, n, the ReLU margin."""
        return (f"gamma={self.localization:g}, nbeta={self.nbeta:g}, n={self.n}, "
                f"relu_margin={self.sharpness.relu_margin}")

    @classmethod
    def from_dict(cls, d: dict) -> "ValiditySettings":
        """The inverse of the recorded form (`dataclasses.asdict` plus the derived nbeta, as config.json holds it)."""
        d = {k: v for k, v in d.items() if k != "nbeta"}
        return cls(**{**d, "sharpness": Sharpness(**d["sharpness"]), "auto": AutoSettings(**d["auto"])})


def estimate(problem: TeacherProblem, st: ValiditySettings, nbeta: float, curvature=None) -> dict:
    """One `auto_llc` estimate on a teacher problem, summarised (LLC, verdict, basin numbers, bounds, timing).

    `curvature` reuses the Hessian at w* of the same problem (it does not depend on nbeta or gamma); the
    summary's "curvature" entry holds this estimate's. On a terminal (a serial run) the sampler shows its own
    progress bar, so a single long estimate is not silent; Ray workers and tests show none.
    """
    with warnings.catch_warnings():  # the verdict is recorded in the row
        warnings.simplefilter("ignore", LLCWarning)
        res = auto_llc(problem.model, problem.data, problem.loss_fn, localization=st.localization, nbeta=nbeta,
                       num_chains=st.num_chains, max_steps=st.max_steps, seed=st.seed, draw_metric=problem.accuracy,
                       draw_metric_min=0.99, settings=st.auto, progress=not is_quiet(), curvature=curvature)
    d = res.diagnostics
    return {"llc_mean": res.llc_mean, "llc_std": res.llc_std, "llc_per_chain": res.llc_per_chain.tolist(),
            "trustworthy": res.trustworthy, "warnings": list(d["warnings"]), "rhat": d["rhat_loss"],
            "acceptance": d["mala_acceptance"], "draw_accuracy_min": d.get("draw_metric_min", math.nan),
            "mean_draw_loss": float(res.loss_trace.mean()), "bounds": res.choices["bounds"],
            "spectrum": res.choices["spectrum"], "step_size": res.choices["step_size"], "nbeta": res.nbeta,
            "n": problem.n, "num_distinct": len(problem.data), "seconds": res.choices["seconds_total"],
            "trace": trace_record(res), "curvature": res.curvature}


def settled_estimate(problem: TeacherProblem, st: ValiditySettings, nbeta: float, curvature=None) -> dict:
    """`estimate`, rerun at twice the previous `max_steps` while the estimator flags it, at most `st.escalate` times
    (the Hessian at w* is reused). The result records `max_steps_used` and `escalations`; a result still flagged
    after the last rerun stays flagged."""
    est = estimate(problem, st, nbeta, curvature)
    steps, tries = st.max_steps, 0
    while not est["trustworthy"] and tries < st.escalate:
        steps, tries = 2 * steps, tries + 1
        est = estimate(problem, dataclasses.replace(st, max_steps=steps), nbeta, est["curvature"])
    return {**est, "max_steps_used": steps, "escalations": tries}


def _rel(a: dict, b: dict) -> float:
    return abs(b["llc_mean"] - a["llc_mean"]) / max(abs(a["llc_mean"]), 1e-12)


ESTIMATES = ("base", "nbeta_x4", "mlp_x10", "qk_x0.1")  # the estimates behind the five checks
_RESCALE = {"mlp_x10": {"mlp": 10.0}, "qk_x0.1": {"qk": 0.1}}


def check_estimate(spec: ProgramSpec, st: ValiditySettings, key: str) -> Optional[dict]:
    """One of the protocol's estimates of a program, settled (`settled_estimate`): `base` on n teacher sequences,
    `nbeta_x4` on 4n at 4x nbeta, `mlp_x10` and `qk_x0.1` the rescaled model on the base data; None where the
    model has no MLP or no head for that reparametrisation. Independent of the others, so they may run in parallel
    (`assemble` puts them together exactly as `validate` does).

    Raises:
        ValueError: an unknown key.
    """
    if key not in ESTIMATES:
        raise ValueError(f"unknown estimate {key!r}; choose from {ESTIMATES}")
    torch.set_num_threads(1)
    if key == "nbeta_x4":
        return settled_estimate(teacher_problem(spec, 4 * st.n, sharpness=st.sharpness), st, 4 * st.nbeta)
    problem = teacher_problem(spec, st.n, sharpness=st.sharpness)
    if key == "base":
        return settled_estimate(problem, st, st.nbeta)
    present = problem.model.mlp_hidden_size > 0 if key == "mlp_x10" else has_heads(problem)
    if not present:
        return None
    return settled_estimate(problem.for_model(rescaled(problem.model, **_RESCALE[key])), st, st.nbeta)


def num_params(spec: ProgramSpec, st: ValiditySettings) -> int:
    """Parameters of the program compiled at the settings' sharpness."""
    return sum(p.numel() for p in to_torch(spec.compile(st.sharpness)).parameters())


def needed(spec: ProgramSpec, st: ValiditySettings) -> tuple:
    """The estimates `validate` runs for a program: none above `max_params`, the base alone without checks."""
    if num_params(spec, st) > st.max_params:
        return ()
    return ESTIMATES if st.checks else ("base",)


def assemble(spec: ProgramSpec, st: ValiditySettings, estimates: dict, seconds: float) -> dict:
    """The validity row of a program from its `check_estimate` results (keys as `needed` gives them; a check
    estimate of a part the model lacks is None)."""
    P = num_params(spec, st)
    row = {"program": spec.name, "num_params": P, "settings": _settings_dict(st)}
    if "base" not in estimates:
        row.update(valid=False, reason=f"not estimated: {P} parameters > max_params {st.max_params} at this scale")
        return row
    base = row["base"] = estimates["base"]
    checks = base_checks(base)
    if st.checks:
        big = row["nbeta_x4"] = estimates["nbeta_x4"]
        row["nbeta_change"] = _rel(base, big)
        checks["nbeta"] = row["nbeta_change"] <= TOLERANCE and big["trustworthy"]
        reparam_ok = True
        for key in ("mlp_x10", "qk_x0.1"):
            est = row[key] = estimates[key]
            if est is None:
                continue
            row[f"{key}_change"] = _rel(base, est)
            reparam_ok = reparam_ok and row[f"{key}_change"] <= TOLERANCE and est["trustworthy"]
        checks["reparam"] = reparam_ok
    row["checks"] = {k: bool(v) for k, v in checks.items()}
    row["valid"] = bool(st.checks and all(checks.values()))
    row["reason"] = "; ".join(_reasons(row)) if not row["valid"] else ""
    row["seconds"] = seconds
    return row


def validate(spec: ProgramSpec, st: ValiditySettings) -> dict:
    """The base estimate and the five checks for one program, one estimate after another (see the module
    docstring)."""
    t0 = time.time()
    estimates = {key: check_estimate(spec, st, key) for key in needed(spec, st)}
    return assemble(spec, st, estimates, time.time() - t0)


def base_checks(est: dict) -> dict:
    """Checks 1, 4 and 5, which need only the estimate itself (an `estimate` result): basin, bounds, rhat."""
    b = est["bounds"]
    return {"basin": bool(est["draw_accuracy_min"] >= 0.99 and est["mean_draw_loss"] <= 0.05),
            "bounds": bool(0.85 * b["effective_half_rank"] <= est["llc_mean"] <= b["half_dim"]),
            "rhat": bool(est["rhat"] < 1.1) and bool(est["trustworthy"])}


def has_heads(problem: TeacherProblem) -> bool:
    """Whether any attention head of the compiled model has a nonzero query or key (the QK x0.1 check applies)."""
    with torch.no_grad():
        return any(float(h.W_Q.abs().sum() + h.W_K.abs().sum()) > 0 for blk in problem.model.blocks
                   for h in blk.attn.heads)


def _reasons(row: dict) -> list:
    out = []
    if "checks" not in row:
        return [row.get("reason", "")]
    c, base = row["checks"], row["base"]
    if not c["basin"]:
        out.append(f"left the basin (draw accuracy {base['draw_accuracy_min']:.3f}, mean draw loss "
                   f"{base['mean_draw_loss']:.3g})")
    if "nbeta" in c and not c["nbeta"]:
        out.append(f"4x data changes it by {row['nbeta_change']:.0%}" + _untrusted(row["nbeta_x4"]))
    if "reparam" in c and not c["reparam"]:
        parts = [f"{k} {row[k + '_change']:.0%}{_untrusted(row[k])}" for k in ("mlp_x10", "qk_x0.1") if row.get(k)]
        out.append("reparametrisation changes it (" + ", ".join(parts) + ")")
    if not c["bounds"]:
        b = base["bounds"]
        out.append(f"outside the bounds [{0.85 * b['effective_half_rank']:.1f}, {b['half_dim']:.0f}]")
    if not c["rhat"]:
        out.append("sampler verdict: " + "; ".join(base["warnings"]) if base["warnings"]
                   else f"R-hat {base['rhat']:.2f}")
    if not out and not all(c.values()):
        out.append("checks not run at this scale")
    return out


def _untrusted(est: dict) -> str:
    return "" if est["trustworthy"] else " (that estimate is itself flagged: " + "; ".join(est["warnings"]) + ")"


def _settings_dict(st: ValiditySettings) -> dict:
    d = dataclasses.asdict(st)
    d["nbeta"] = st.nbeta
    return d


def table_row(row: dict) -> dict:
    """The flat CSV row of one program: LLC, bounds, each check's number and verdict, valid, reason."""
    base = row.get("base") or {}
    b = base.get("bounds", {})
    out = {"program": row["program"], "num_params": row["num_params"], "llc_mean": base.get("llc_mean", math.nan),
           "llc_std": base.get("llc_std", math.nan), "half_rank": b.get("half_rank", math.nan),
           "effective_half_rank": b.get("effective_half_rank", math.nan), "half_dim": b.get("half_dim", math.nan),
           "llc_over_half_rank": (base.get("llc_mean", math.nan) / b["half_rank"]) if b.get("half_rank") else math.nan,
           "draw_accuracy_min": base.get("draw_accuracy_min", math.nan), "rhat": base.get("rhat", math.nan),
           "acceptance": base.get("acceptance", math.nan),
           "nbeta_change": row.get("nbeta_change", math.nan), "mlp_x10_change": row.get("mlp_x10_change", math.nan),
           "qk_x0.1_change": row.get("qk_x0.1_change", math.nan)}
    for c in CHECKS:
        out[f"check_{c}"] = row.get("checks", {}).get(c, "")
    out["valid"] = row["valid"]
    out["reason"] = row.get("reason", "")
    out["seconds"] = row.get("seconds", math.nan)
    return out


def summary_counts(rows: list) -> dict:
    """How many programs were valid, and which failed which check."""
    failed = {c: [r["program"] for r in rows if r.get("checks", {}).get(c) is False] for c in CHECKS}
    return {"num_programs": len(rows), "num_valid": int(sum(r["valid"] for r in rows)),
            "valid": [r["program"] for r in rows if r["valid"]], "failed": failed,
            "not_estimated": [r["program"] for r in rows if "base" not in r]}


def median_seconds(rows: list) -> Optional[float]:
    secs = [r["seconds"] for r in rows if "seconds" in r]
    return float(np.median(secs)) if secs else None
