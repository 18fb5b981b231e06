"""Scale, results root, device and environment records shared by every study (jobs run through `studies.runner`)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Optional

SCALES = ("smoke", "quick", "full")


def scale() -> str:
    """`LLC_SCALE` (default `quick`).

    Raises:
        ValueError: an unknown scale.
    """
    s = os.environ.get("LLC_SCALE", "quick")
    if s not in SCALES:
        raise ValueError(f"LLC_SCALE must be one of {SCALES}, got {s!r}")
    return s


def device() -> "torch.device":
    """`LLC_DEVICE` (default `cpu`): `cpu`, `cuda` or `cuda:N`, where the studies build and sample their models.

    Raises:
        ValueError: another value, or a CUDA device that this machine does not have.
    """
    import torch

    name = os.environ.get("LLC_DEVICE", "cpu").strip() or "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (kind == "cpu" and index) or (index and not index.isdigit()):
        raise ValueError(f"LLC_DEVICE must be cpu, cuda or cuda:N, got {name!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"LLC_DEVICE={name} but CUDA is not available (torch {torch.__version__})")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"LLC_DEVICE={name} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device(name)


def results_root() -> Path:
    """`LLC_RESULTS_DIR` (default `results`)."""
    return Path(os.environ.get("LLC_RESULTS_DIR", "results"))


REPO_ROOT = Path(__file__).resolve().parents[1]


def json_default(o):
    """`json.dumps(..., default=json_default)` for study records: numpy arrays as lists, numpy and torch scalars as
    numbers, anything else as its `str`."""
    import numpy as np

    if isinstance(o, np.ndarray):
        return o.tolist()
    try:
        return o.item()  # numpy and torch scalars
    except (AttributeError, ValueError, RuntimeError):
        return str(o)


def rerun_requested() -> bool:
    """`LLC_RERUN=1`: a notebook recomputes its study (at `LLC_SCALE`, into `LLC_RESULTS_DIR`) instead of reading
    the committed results.

    Raises:
        ValueError: LLC_RERUN is set to something other than 0 or 1.
    """
    value = os.environ.get("LLC_RERUN", "0").strip() or "0"
    if value not in ("0", "1"):
        raise ValueError(f"LLC_RERUN must be 0 or 1, got {value!r}")
    return value == "1"


def notebook_results(experiment: str, rerun: bool) -> Path:
    """The folder a notebook shows: `results_root() / experiment` when it reruns the study, else the committed
    `results/<experiment>` of this repository (wherever the notebook's working directory is).

    Raises:
        FileNotFoundError: not rerunning and the committed folder is missing.
    """
    if rerun:
        return results_root() / experiment
    path = REPO_ROOT / "results" / experiment
    if not (path / "metrics.json").exists():
        raise FileNotFoundError(f"no committed results in {path}; run `make results` or set RERUN = True")
    return path


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=Path(__file__).parent)
    except OSError:
        return None
    return out.stdout if out.returncode == 0 else None


def environment() -> dict:
    """Package versions, the git commit and whether the working tree had uncommitted changes (`dirty`).

    Committed results must come from a clean tree (`dirty` False); `dirty` is None where git is unavailable.
    """
    import haiku
    import jax
    import numpy as np
    import torch

    commit, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain")
    try:
        ray_version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        ray_version = None
    return {"python": platform.python_version(), "torch": torch.__version__, "jax": jax.__version__,
            "haiku": haiku.__version__, "numpy": np.__version__, "ray": ray_version,
            "device": os.environ.get("LLC_DEVICE", "cpu"), "git_commit": (commit or "").strip(),
            "dirty": None if status is None else bool(status.strip())}
