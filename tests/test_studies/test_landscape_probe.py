"""`studies.landscape_probe`: the probe beside each program's committed verdict, written as a results folder."""

import json

import pytest

from studies.landscape_probe import run, verdicts
from tests.test_studies.test_complexity_escalation import _source


def _with_rows(tmp_path):
    src = _source(tmp_path)
    (src / "metrics.json").write_text(json.dumps({"programs": {
        "identity": {"num_params": 366, "llc_mean": 20.0, "valid": False},
        "sort": {"num_params": 17019, "llc_mean": float("nan"), "valid": False}}}))
    (tmp_path / "complexity_escalation").mkdir()
    (tmp_path / "complexity_escalation" / "metrics.json").write_text(json.dumps({"programs": {
        "identity": {"num_params": 366, "llc_mean": 21.0, "valid": True}}}))
    return src


def test_verdicts_take_the_supplement_over_the_table_and_mark_unestimated_programs(tmp_path):
    _with_rows(tmp_path)
    assert verdicts(tmp_path) == {"identity": "valid", "sort": "not estimated"}


def test_the_probe_runs_within_max_params_and_says_which_programs_it_left_out(tmp_path):
    out = tmp_path / "out"
    metrics = run(_with_rows(tmp_path), out, ("identity", "sort"), max_params=1000, steps=200, workers=1)
    assert list(metrics["programs"]) == ["identity"]
    row = metrics["programs"]["identity"]
    assert row["verdict"] == "valid" and row["rank"] + row["complement_dim"] == row["num_params"] == 366
    assert row["step_size"] > 0 and len(row["rows"]) >= 5
    config = json.loads((out / "config.json").read_text())
    assert config["not_probed"] == ["sort"] and config["steps"] == 200
    readme = (out / "README.md").read_text()
    assert "## The answer" in readme and "| identity | 366 |" in readme and " nan" not in readme
    assert (out / "probe.png").stat().st_size > 0


def test_unknown_programs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown programs"):
        run(_with_rows(tmp_path), tmp_path / "o", ("no_such_program",), 1000, 200, 1)
