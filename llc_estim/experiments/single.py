"""Calibrate and estimate the LLC of one registered compiled program (what the per-program notebooks call)."""

from __future__ import annotations

import dataclasses

from llc_estim import estimate_llc
from llc_estim.experiments.complexity import PRESETS
from llc_estim.experiments.complexity_runs import _setup
from llc_estim.experiments.teacher import teacher_loss
from llc_estim import calibrate
from rasp_models import registry
from rasp_models.base import descriptors


@dataclasses.dataclass
class ProgramStudy:
    name: str
    descriptors: dict
    calibration: object  # CalibrationResult
    result: object  # LLCResult at the recommended setting, or None


def study_program(name: str, scale: str = "quick") -> ProgramStudy:
    """Calibrates the step size on the program (same grid and settings as the complexity study at `scale`),
    then estimates its LLC with seed 0."""
    st = PRESETS[scale].settings
    spec = registry.get(name)
    tm, data = _setup(spec, st.num_sequences)
    base = dataclasses.replace(st.base, num_chains=st.calib_chains, num_draws=st.calib_draws,
                               num_burnin=st.calib_burnin)
    cal = calibrate(tm, data, teacher_loss, base, step_sizes=st.step_grid)
    res = None
    if cal.recommended is not None:
        res = estimate_llc(tm, data, teacher_loss, dataclasses.replace(st.base, step_size=cal.recommended.step_size))
    return ProgramStudy(name, descriptors(spec), cal, res)
