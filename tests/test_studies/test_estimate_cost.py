"""`studies.estimate_cost`: timed gradient evaluations projected to the five checks, beside the table's own time."""

import csv
import json
import math

import pytest

from studies import estimate_cost
from studies.validity import ValiditySettings


def _source(tmp_path, seconds):
    st = ValiditySettings(n=16, max_steps=1000, num_chains=2)
    validity = {**json.loads(json.dumps(st, default=lambda o: o.__dict__)), "nbeta": st.nbeta}
    src = tmp_path / "complexity"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"config": {"validity": validity},
                                                 "environment": {"git_commit": "c" * 40}}))
    (src / "metrics.json").write_text(json.dumps({"programs": {"identity": {"seconds": seconds},
                                                               "histogram": {"seconds": math.nan}}}))
    return src


def test_the_projection_counts_each_check_estimate_at_the_tables_budget(tmp_path):
    metrics = estimate_cost.run(_source(tmp_path, 36.0), tmp_path / "out", ("identity", "histogram"), repeats=1)
    for name, r in metrics["programs"].items():
        assert r["cpu_seconds_per_eval_n"] > 0 and r["cpu_seconds_per_eval_4n"] > 0
        assert r["distinct_4n"] >= r["distinct_n"]
        same = r["estimates"] - 1  # base and the reparametrisations at n, the 4x-data estimate at 4n
        assert 1 <= same <= 3
        assert r["projected_hours"] == pytest.approx(
            1000 * (same * r["cpu_seconds_per_eval_n"] + r["cpu_seconds_per_eval_4n"]) / 3600)
    idn = metrics["programs"]["identity"]
    assert idn["table_hours"] == pytest.approx(0.01)
    assert idn["table_over_projected"] == pytest.approx(0.01 / idn["projected_hours"])
    assert math.isnan(metrics["programs"]["histogram"]["table_hours"])  # the table did not estimate it
    with open(tmp_path / "out" / "cost.csv") as f:
        assert [r["program"] for r in csv.DictReader(f)] == ["identity", "histogram"]
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "| identity |" in readme and (tmp_path / "out" / "cost.png").exists()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["source_commit"] == "c" * 40


def test_no_timing_without_a_repeat(tmp_path):
    with pytest.raises(ValueError, match="repeats"):
        estimate_cost.run(_source(tmp_path, 1.0), tmp_path / "out", ("identity",), repeats=0)


def test_the_projection_is_called_a_bound_only_where_the_table_shows_it():
    assert "lower bound" in estimate_cost._comparison([1.2, 3.0])
    below = estimate_cost._comparison([0.7, 1.0])
    assert "order of magnitude" in below and "lower bound" not in below
    assert "could not be checked" in estimate_cost._comparison([])
