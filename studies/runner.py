"""Running a study's jobs: serially in this process, or as Ray tasks (a local Ray by default, a cluster by address).

`run_jobs(fn, args_list, workers)` returns `[fn(*args) for args in args_list]`, in input order:

- `workers <= 1` (every smoke preset) or a single job: serially, in this process, with no Ray start-up cost.
- otherwise: one Ray task per job. With no address set, Ray starts locally with `workers` CPUs (no set-up, no
  dashboard; a few seconds once per process, reused by later calls). `LLC_RAY_ADDRESS` (or Ray's own
  `RAY_ADDRESS`) sends the same tasks to an existing cluster instead; the project's packages travel with them
  (`py_modules`), its dependencies must be installed there.

`LLC_WORKERS=N` overrides every study's `workers` (1: always serial). Every job runs with one torch thread and
sees the driver's `LLC_*` variables, working directory and JAX precision, so a job gives the same numbers serially
and on Ray. With `LLC_DEVICE=cuda` every Ray task asks for 1/workers of a GPU (`LLC_GPUS_PER_JOB` overrides).

Progress: a tqdm bar over jobs (done/total, ETA) when stderr is a terminal, else one log line per finished job
(`desc [done/total] elapsed, ETA: what the job found`); nothing under pytest or with `LLC_QUIET=1`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from tqdm.auto import tqdm

ADDRESS_VARS = ("LLC_RAY_ADDRESS", "RAY_ADDRESS")
PACKAGES = ("tracr", "rasp_models", "datasets", "llc_estim", "llc_training", "studies")


def ray_address() -> Optional[str]:
    """The Ray cluster to use (`LLC_RAY_ADDRESS`, then `RAY_ADDRESS`); None means a local Ray."""
    for var in ADDRESS_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def effective_workers(workers: int) -> int:
    """`LLC_WORKERS` when set (an int >= 1), else `workers`.

    Raises:
        ValueError: `LLC_WORKERS` is not a positive integer.
    """
    value = os.environ.get("LLC_WORKERS", "").strip()
    if not value:
        return int(workers)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"LLC_WORKERS must be a positive integer, got {value!r}")
    return int(value)


def is_quiet() -> bool:
    """No progress output under pytest (it sets PYTEST_CURRENT_TEST) or with LLC_QUIET=1."""
    return "PYTEST_CURRENT_TEST" in os.environ or os.environ.get("LLC_QUIET", "") not in ("", "0")


class _Progress:
    """A tqdm bar on a terminal, else a log line per finished job; silent when quiet."""

    def __init__(self, desc: str, total: int, silent: bool):
        self.desc, self.total, self.silent, self.done, self.t0 = desc, total, silent, 0, time.time()
        self.bar = tqdm(total=total, desc=desc, unit="job", leave=False) if not silent and sys.stderr.isatty() else None

    def finished(self, text: str = "") -> None:
        self.done += 1
        if self.silent:
            return
        elapsed = time.time() - self.t0
        eta = elapsed / self.done * (self.total - self.done)
        line = f"  {self.desc} [{self.done}/{self.total}] {_clock(elapsed)} elapsed, ETA {_clock(eta)}"
        line += f": {text}" if text else ""
        if self.bar is not None:
            self.bar.update(1)
            tqdm.write(line, file=sys.stderr)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


@contextlib.contextmanager
def _one_thread():
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _context() -> dict:
    """What a job must see to compute what it would compute here: LLC_* variables, cwd, sys.path, JAX precision."""
    x64 = None
    if "jax" in sys.modules:
        x64 = bool(sys.modules["jax"].config.jax_enable_x64)
    return {"env": {k: v for k, v in os.environ.items() if k.startswith("LLC_")}, "cwd": os.getcwd(),
            "path": [p for p in sys.path if p], "x64": x64}


def _task(payload: bytes, context: dict, gpu: bool):
    """The body of one Ray task: restore the driver's context, then run the job with one torch thread."""
    for key in [k for k in os.environ if k.startswith("LLC_") and k not in context["env"]]:
        del os.environ[key]  # a worker process serves many tasks: no setting of an earlier one may linger
    os.environ.update(context["env"])
    if gpu and os.environ.get("LLC_DEVICE", "").startswith("cuda"):
        os.environ["LLC_DEVICE"] = "cuda"  # Ray made the assigned GPU the only visible one
    if Path(context["cwd"]).is_dir():  # a local Ray; on a cluster the paths may not exist
        os.chdir(context["cwd"])
    for p in reversed(context["path"]):
        if p not in sys.path and Path(p).is_dir():
            sys.path.insert(0, p)
    if context["x64"] is not None:
        import jax

        jax.config.update("jax_enable_x64", context["x64"])
    fn, args = pickle.loads(payload)
    with _one_thread():
        return fn(*args)


def _ray(workers: int):
    """The Ray module, initialised once per process: locally with `workers` CPUs, or connected to an address."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if not ray.is_initialized():
        address = ray_address()
        common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        if address is None:
            ray.init(address="local", num_cpus=workers, **common)
        else:
            root = Path(__file__).resolve().parent.parent
            ray.init(address=address, runtime_env={"py_modules": [str(root / p) for p in PACKAGES],
                                                   "excludes": ["__pycache__", "*.ipynb"]}, **common)
    return ray


def shutdown() -> None:
    """Stops the Ray that `run_jobs` started or connected to (a no-op when none)."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()


def run_jobs(fn: Callable, args_list: Sequence[tuple], workers: int, on_done: Optional[Callable] = None,
             desc: str = "jobs", describe: Optional[Callable] = None, quiet: Optional[bool] = None) -> list:
    """`[fn(*args) for args in args_list]`, serially or as Ray tasks (see the module doc), results in input order.

    Args:
        fn: a top-level (picklable) function.
        args_list: one tuple of positional arguments per job.
        workers: parallel jobs; <= 1 runs them serially in this process (`LLC_WORKERS` overrides).
        on_done: optional `on_done(index, result)`, called in this process as each job finishes.
        desc: the label of the progress bar and the log lines.
        describe: optional `describe(args, result) -> str`, appended to the job's log line.
        quiet: True silences the progress output, False forces it; None: silent under pytest or with LLC_QUIET=1.

    Raises:
        Whatever a job raises (the remaining Ray tasks are cancelled).
    """
    args_list = [tuple(a) for a in args_list]
    workers = effective_workers(workers)
    progress = _Progress(desc, len(args_list), is_quiet() if quiet is None else quiet)

    def finish(i, result):
        if on_done is not None:
            on_done(i, result)
        progress.finished(describe(args_list[i], result) if describe is not None else "")

    try:
        if workers <= 1 or (len(args_list) <= 1 and ray_address() is None):
            out = []
            for i, args in enumerate(args_list):
                with _one_thread():
                    out.append(fn(*args))
                finish(i, out[-1])
            return out
        return _run_ray(fn, args_list, workers, finish)
    finally:
        progress.close()


def _run_ray(fn, args_list, workers, finish) -> list:
    ray = _ray(workers)
    from ray import cloudpickle

    gpu = os.environ.get("LLC_DEVICE", "cpu").startswith("cuda")
    share = float(os.environ.get("LLC_GPUS_PER_JOB", 1.0 / workers)) if gpu else 0
    remote = ray.remote(num_cpus=1, num_gpus=share, max_retries=0)(_task)
    context = _context()
    refs = [remote.remote(cloudpickle.dumps((fn, args)), context, gpu) for args in args_list]
    index = {ref: i for i, ref in enumerate(refs)}
    results, pending = [None] * len(refs), list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = index[ref]
                results[i] = ray.get(ref)
                finish(i, results[i])
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return results
