"""Calibrate and estimate the LLC of one registered compiled program (what the per-program notebooks call)."""

from __future__ import annotations

import dataclasses

from llc_estim import CalibrationResult, LLCResult, calibrate, estimate_llc
from rasp_models import registry
from rasp_models.base import descriptors
from studies.complexity import PRESETS
from studies.complexity_runs import problem


@dataclasses.dataclass
class ProgramStudy:
    """One program's descriptors, calibration, and LLC at the recommended setting (None if there is none)."""

    name: str
    descriptors: dict
    calibration: CalibrationResult
    result: LLCResult | None


def study_program(name: str, scale: str = "quick") -> ProgramStudy:
    """Calibrates the step size on the program (same grid and settings as the complexity study at `scale`),
    then estimates its LLC with seed 0."""
    st = PRESETS[scale].settings
    spec = registry.get(name)
    prob = problem(spec, st.num_sequences)
    base = dataclasses.replace(st.base, num_chains=st.calib_chains, num_draws=st.calib_draws,
                               num_burnin=st.calib_burnin)
    cal = calibrate(prob.model, prob.data, prob.loss_fn, base, step_sizes=st.step_grid)
    res = None
    if cal.recommended is not None:
        res = estimate_llc(prob.model, prob.data, prob.loss_fn,
                           dataclasses.replace(st.base, step_size=cal.recommended.step_size))
    return ProgramStudy(name, descriptors(spec), cal, res)
