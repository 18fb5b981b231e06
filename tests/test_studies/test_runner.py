"""The job runner: serial and Ray execution give the same numbers in the same order; the device setting is checked."""

import numpy as np
import pytest
import torch

from studies import runner
from studies.common import device


def _compiled_job(seed: int):
    """A compiled program through the whole pipeline: compile, teacher data, a short SGLD run."""
    from datasets.teacher import teacher_problem
    from llc_estim import SGLDConfig, estimate_llc
    from rasp_models import registry

    prob = teacher_problem(registry.get("fractok"), 64, seed=seed)
    cfg = SGLDConfig(step_size=1e-6, localization=1000.0, num_chains=2, num_draws=15, num_burnin=5, batch_size=16,
                     seed=seed, progress=False)
    res = estimate_llc(prob.model, prob.data, prob.loss_fn, cfg)
    return {"trace": res.loss_trace, "init": res.init_loss, "threads": torch.get_num_threads()}


def _square(x):
    return x * x


def _fails(x):
    raise ValueError(f"job {x} failed")


def test_serial_runner_keeps_order_calls_back_and_uses_one_thread():
    seen = []
    out = runner.run_jobs(_square, [(3,), (1,), (2,)], workers=1, on_done=lambda i, r: seen.append((i, r)))
    assert out == [9, 1, 4] and seen == [(0, 9), (1, 1), (2, 4)]
    with pytest.raises(ValueError, match="job 5 failed"):
        runner.run_jobs(_fails, [(5,)], workers=1)


def test_progress_lines_and_quiet(capsys, monkeypatch):
    runner.run_jobs(_square, [(2,), (3,)], workers=1, desc="squares", describe=lambda a, r: f"{a[0]}^2={r}",
                    quiet=False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("  squares [1/2]") and "ETA" in lines[0]
    assert lines[1].endswith("3^2=9")
    runner.run_jobs(_square, [(2,)], workers=1)  # under pytest: silent
    assert capsys.readouterr().out == ""


def test_workers_override(monkeypatch):
    monkeypatch.setenv("LLC_WORKERS", "1")
    assert runner.effective_workers(4) == 1
    monkeypatch.setenv("LLC_WORKERS", "two")
    with pytest.raises(ValueError, match="LLC_WORKERS"):
        runner.effective_workers(4)


def test_device_setting(monkeypatch):
    monkeypatch.delenv("LLC_DEVICE", raising=False)
    assert device() == torch.device("cpu")
    for bad in ("gpu", "cpu:1", "cuda:x"):
        monkeypatch.setenv("LLC_DEVICE", bad)
        with pytest.raises(ValueError, match="LLC_DEVICE"):
            device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("LLC_DEVICE", "cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            device()


def test_task_body_gives_the_serial_numbers():
    """What a Ray task runs (the pickled job in the driver's context, one thread) reproduces the serial result."""
    import pickle

    direct = _compiled_job(3)
    via_task = runner._task(pickle.dumps((_compiled_job, (3,))), runner._context(), False)
    np.testing.assert_array_equal(direct["trace"], via_task["trace"])
    assert via_task["threads"] == 1


@pytest.mark.slow
def test_ray_and_serial_give_identical_numbers(monkeypatch):
    """The same seeds give bit-identical LLC traces serially (this process) and as Ray tasks (a local Ray).

    Slow tier: starting a local Ray and its two workers takes 35-40 s on a loaded 2-core machine."""
    pytest.importorskip("ray")
    for var in runner.ADDRESS_VARS + ("LLC_WORKERS",):
        monkeypatch.delenv(var, raising=False)
    jobs = [(0,), (1,), (2,)]
    serial = runner.run_jobs(_compiled_job, jobs, workers=1)
    try:
        parallel = runner.run_jobs(_compiled_job, jobs, workers=2)
        with pytest.raises(ValueError, match="job [78] failed"):
            runner.run_jobs(_fails, [(7,), (8,)], workers=2)
    finally:
        runner.shutdown()
    for s, p in zip(serial, parallel):
        np.testing.assert_array_equal(s["trace"], p["trace"])
        assert s["init"] == p["init"] and s["threads"] == p["threads"] == 1
    assert not np.array_equal(serial[0]["trace"], serial[1]["trace"])
