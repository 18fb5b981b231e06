"""`studies.complexity_escalation`: the table's protocol rerun with escalation, written as a results folder."""

import dataclasses
import json

import pytest

from studies import complexity
from studies.complexity_escalation import merge, run


def _source(tmp_path):
    """A complexity folder holding the settings (smoke budget, checks on) and a table row for identity."""
    cfg = complexity.PRESETS["smoke"]
    cfg = dataclasses.replace(cfg, validity=dataclasses.replace(cfg.validity, checks=True, max_steps=200))
    src = tmp_path / "complexity"
    src.mkdir(exist_ok=True)
    (src / "config.json").write_text(json.dumps({"config": complexity._jsonable(cfg),
                                                 "environment": {"git_commit": "f" * 40, "dirty": False}}))
    (src / "metrics.json").write_text(json.dumps({"programs": {"identity": {"valid": False}}}))
    return src


def test_escalation_refuses_what_would_be_the_table_itself_or_unknown_programs(tmp_path):
    with pytest.raises(ValueError, match="escalate must be >= 1"):
        run(_source(tmp_path), tmp_path / "o", ("identity",), escalate=0, workers=1)
    with pytest.raises(ValueError, match="unknown programs"):
        run(_source(tmp_path), tmp_path / "o", ("no_such_program",), escalate=1, workers=1)


def test_escalation_reruns_the_protocol_reports_budgets_and_merges_runs(tmp_path):
    """One escalation run of identity at the smoke budget (one run serves both halves: it is the slow part), then
    `merge` with a second part as another run would write it: each run keeps its commit; duplicates and parts
    at other settings are refused."""
    out = tmp_path / "out"
    metrics = run(_source(tmp_path), out, ("identity",), escalate=1, workers=1)
    row = metrics["programs"]["identity"]
    assert row["valid_in_table"] is False and isinstance(row["valid"], bool)
    # every estimate records its budget: the table's 200 steps, or 400 where the estimator had flagged it
    steps = [row[f"steps_{k}"] for k in ("base", "nbeta_x4", "mlp_x10")]
    assert all(s in (200, 400) for s in steps)
    assert all((s == 400) or row[f"trustworthy_{k}"] for s, k in zip(steps, ("base", "nbeta_x4", "mlp_x10")))
    assert row["steps_qk_x0.1"] == ""  # identity has no attention head: no such check
    readme = (out / "README.md").read_text()
    assert "## The answer" in readme and "None" not in readme and " nan" not in readme
    assert json.loads((out / "config.json").read_text())["settings"]["escalate"] == 1
    assert (out / "escalation.csv").read_text().startswith("program,")

    a = out
    b = tmp_path / "b"  # a second run, as if of another program at another commit
    b.mkdir()
    metrics = json.loads((a / "metrics.json").read_text())
    metrics["programs"] = {"length": {**metrics["programs"]["identity"], "program": "length", "num_params": 150_000}}
    (b / "metrics.json").write_text(json.dumps(metrics))
    config = json.loads((a / "config.json").read_text())
    config["runs"][0].update(commit="b" * 40, programs=["length"], max_params=200_000)
    config["settings"]["max_params"] = 200_000  # a selection, not a sampling setting: merged, the largest is recorded
    (b / "config.json").write_text(json.dumps(config))
    merged = merge([a, b], tmp_path / "merged")
    assert list(merged["programs"]) == ["identity", "length"]
    readme = (tmp_path / "merged" / "README.md").read_text()
    assert "identity at commit" in readme and "length at commit `bbbbbbbbbb`" in readme
    assert readme.count("| identity |") == 1 and readme.count("| length |") == 1
    merged_config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert len(merged_config["runs"]) == 2 and merged_config["settings"]["max_params"] == 200_000
    assert "max_params 200000" in readme
    assert "| not estimated (150000 params > 100000) | " in readme  # the table left it out; this run did not
    with pytest.raises(ValueError, match="more than one part"):
        merge([a, a], tmp_path / "o2")
    config["settings"]["escalate"] = 2
    (b / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="differ in settings"):
        merge([a, b], tmp_path / "o3")
