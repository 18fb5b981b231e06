"""LLC estimation (torch and numpy only; no dependency on the rest of the project).

`estimate_llc` runs a sampler at given settings; `auto_llc` chooses them itself; `llc_bounds` places an estimate
between the Hessian bounds; every result carries `diagnostics["trustworthy"]` and the reasons.
"""

from llc_estim.config import LLCResult, SGLDConfig, SGLDDivergenceError
from llc_estim.curvature import Curvature, hessian_eigen, llc_bounds
from llc_estim.diagnostics import Thresholds, trace_record
from llc_estim.precondition import (DiagonalPreconditioner, LowRankPreconditioner, Preconditioner,
                                    curvature_preconditioner, diagonal_preconditioner)
from llc_estim.sampler import LLCWarning, estimate_llc
from llc_estim.auto import AutoSettings, auto_llc
from llc_estim.calibration import CalibrationResult, calibrate

__all__ = ["SGLDConfig", "LLCResult", "SGLDDivergenceError", "LLCWarning", "Thresholds", "estimate_llc",
           "auto_llc", "AutoSettings", "calibrate", "CalibrationResult", "Curvature", "hessian_eigen", "llc_bounds",
           "Preconditioner", "DiagonalPreconditioner", "LowRankPreconditioner", "curvature_preconditioner",
           "diagonal_preconditioner", "trace_record"]
