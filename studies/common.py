"""Scale, results root, environment records and worker processes shared by every study."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Callable, Optional

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


def results_root() -> Path:
    """`LLC_RESULTS_DIR` (default `results`)."""
    return Path(os.environ.get("LLC_RESULTS_DIR", "results"))


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
    return {"python": platform.python_version(), "torch": torch.__version__, "jax": jax.__version__,
            "haiku": haiku.__version__, "numpy": np.__version__, "git_commit": (commit or "").strip(),
            "dirty": None if status is None else bool(status.strip())}


def run_parallel(fn: Callable, args_list: list, workers: int, on_done: Optional[Callable] = None) -> list:
    """`[fn(*args) for args in args_list]`, in `workers` spawned processes when workers > 1 (results in order).

    Args:
        on_done: optional callback `on_done(index, result)` called as each job finishes.
    """
    if workers <= 1:
        out = []
        for i, args in enumerate(args_list):
            out.append(fn(*args))
            if on_done:
                on_done(i, out[-1])
        return out
    import concurrent.futures as cf
    import multiprocessing as mp

    results = [None] * len(args_list)
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(fn, *args): i for i, args in enumerate(args_list)}
        for fut in cf.as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_done:
                on_done(i, results[i])
    return results
