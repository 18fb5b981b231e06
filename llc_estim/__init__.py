"""LLC estimation with vectorised SGLD (torch and numpy only; no dependency on the rest of the project)."""

from llc_estim.config import LLCResult, SGLDConfig, SGLDDivergenceError
from llc_estim.sampler import estimate_llc

__all__ = ["SGLDConfig", "LLCResult", "SGLDDivergenceError", "estimate_llc"]

from llc_estim.calibration import CalibrationResult, calibrate  # noqa: E402

__all__ += ["calibrate", "CalibrationResult"]
