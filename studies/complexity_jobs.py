"""The jobs of the complexity study (question 1), as typed, picklable records with a `run()` method.

  * `TableJob`: one registered program, the base estimate and the five validity checks (`studies.validity`).
  * `RungJob`: one rung of a complexity ladder (a ladder program or a size variant) at one sampler seed: the
    base estimate with its verdict and Hessian bounds.
  * `KnobJob`: one program at one value of one knob: a compiler sharpness knob (softmax_coldness, mlp_exactness,
    relu_margin; exactness against the reference is checked first) or the localization gamma (with nbeta scaled
    along, so nbeta / gamma stays fixed): the base estimate and its verdict.
Jobs are self-contained (each compiles its program), so they can run in worker processes or on Ray.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from datasets import generators
from datasets.teacher import teacher_problem
from rasp_models import registry
from rasp_models.base import ProgramSpec, descriptors
from rasp_models.ladders import LADDERS
from studies.validity import ValiditySettings, estimate, validate

SIZE_VARIANTS = {  # the registered programs' size sweeps: (family, size) rungs, one knob each
    "fractok_len": [("fractok", {"letters": 5, "max_seq_len": m}) for m in (4, 6, 8, 10)],
    "fractok_vocab": [("fractok", {"letters": v, "max_seq_len": 6}) for v in (3, 5, 9, 13)],
    "palindrome_len": [("palindrome", {"max_seq_len": m}) for m in (4, 5, 6, 8)],
    "sort_len": [("sort", {"max_seq_len": m}) for m in (3, 4, 5, 6)],
}


def ladder_spec(ladder: str, rung: int) -> ProgramSpec:
    """The program at `rung` (an index into the ladder's rungs) of a complexity ladder or size sweep."""
    if ladder in LADDERS:
        build, rungs = LADDERS[ladder]
        return build(rungs[rung])
    if ladder in SIZE_VARIANTS:
        family, size = SIZE_VARIANTS[ladder][rung]
        return registry.variant(family, **size)
    raise KeyError(f"unknown ladder {ladder!r}; known: {sorted(LADDERS) + sorted(SIZE_VARIANTS)}")


def ladder_rungs(ladder: str) -> list:
    """The knob values of a ladder, in order."""
    if ladder in LADDERS:
        return list(LADDERS[ladder][1])
    return [next(iter(s.values())) if len(s) == 1 else s for _, s in SIZE_VARIANTS[ladder]]


def _describe(spec: ProgramSpec, st: ValiditySettings) -> dict:
    d = descriptors(spec, spec.compile(st.sharpness))
    d["primitives_by_kind"] = dict(d["primitives_by_kind"])
    d["selector_width"] = d["primitives_by_kind"].get("SelectorWidth", 0)
    return d


def _summary(est: dict) -> dict:
    """An estimate without its bulky entries (traces and the Hessian)."""
    return {k: v for k, v in est.items() if k not in ("trace", "curvature")}


@dataclasses.dataclass(frozen=True)
class TableJob:
    program: str
    settings: ValiditySettings

    def run(self) -> dict:
        spec = registry.get(self.program)
        row = validate(spec, self.settings)
        for key in ("base", "nbeta_x4", "mlp_x10", "qk_x0.1"):
            if row.get(key):
                if key == "base":
                    row["trace"] = row[key]["trace"]
                row[key] = _summary(row[key])
        row["descriptors"] = _describe(spec, self.settings)
        return row


@dataclasses.dataclass(frozen=True)
class RungJob:
    ladder: str
    rung: int
    seed: int
    settings: ValiditySettings

    def run(self) -> dict:
        torch.set_num_threads(1)
        spec = ladder_spec(self.ladder, self.rung)
        st = dataclasses.replace(self.settings, seed=self.seed)
        est = estimate(teacher_problem(spec, st.n, sharpness=st.sharpness), st, st.nbeta)
        return {"ladder": self.ladder, "rung": self.rung, "knob": ladder_rungs(self.ladder)[self.rung],
                "program": spec.name, "seed": self.seed, **_summary(est), "descriptors": _describe(spec, st)}


SHARPNESS_KNOBS = ("softmax_coldness", "mlp_exactness", "relu_margin")


@dataclasses.dataclass(frozen=True)
class KnobJob:
    program: str
    knob: str  # a field of Sharpness, or "localization"
    value: float
    settings: ValiditySettings

    def run(self) -> dict:
        torch.set_num_threads(1)
        t0 = time.time()
        spec = registry.get(self.program)
        st = self.settings
        if self.knob in SHARPNESS_KNOBS:
            st = dataclasses.replace(st, sharpness=dataclasses.replace(st.sharpness, **{self.knob: self.value}))
        elif self.knob == "localization":
            factor = self.value / st.localization
            st = dataclasses.replace(st, localization=self.value, beta=st.beta * factor)
        else:
            raise ValueError(f"unknown knob {self.knob!r}")
        exact = reference_accuracy(spec, st.sharpness)
        out = {"program": self.program, "knob": self.knob, "value": self.value, "reference_accuracy": exact,
               "localization": st.localization, "nbeta": st.nbeta}
        if exact < 1.0:
            return {**out, "estimated": False, "reason": f"not exact at this setting ({exact:.4f} accuracy)",
                    "seconds": time.time() - t0}
        est = estimate(teacher_problem(spec, st.n, sharpness=st.sharpness), st, st.nbeta)
        return {**out, "estimated": True, **_summary(est)}


def reference_accuracy(spec: ProgramSpec, sharpness, n: int = 300, seed: int = 99) -> float:
    """Share of defined positions where the model compiled at `sharpness` decodes like the reference."""
    from tracr.haiku_to_pytorch import to_torch

    tm = to_torch(spec.compile(sharpness))
    seqs = generators.generate(spec, n, seed)
    decoded = tm.decode(tm.encode(seqs), check=False)
    good = total = 0
    for xs, row in zip(seqs, decoded):
        for got, want in zip(row[1:], spec.reference(list(xs))):
            if want is None:
                continue
            total += 1
            good += (abs(got - want) <= 1e-2) if spec.numerical else got == want
    return good / total if total else math.nan


def run_job(job) -> dict:
    """Entry point for worker processes."""
    return job.run()
