"""Scale presets, results root and environment records shared by every experiment."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

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


def environment() -> dict:
    """Package versions and the git commit, recorded with every result."""
    import haiku
    import jax
    import numpy as np
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {"python": platform.python_version(), "torch": torch.__version__, "jax": jax.__version__,
            "haiku": haiku.__version__, "numpy": np.__version__, "git_commit": commit}


def run_parallel(fn, args_list: list, workers: int, on_done=None) -> list:
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
