"""`studies.landscape_probe`: the probe beside each program's committed verdict, written as a results folder."""

import json
import shutil

import pytest

from studies.landscape_probe import merge, run, verdicts
from tests.test_studies.test_complexity_escalation import _source


def _with_rows(tmp_path):
    src = _source(tmp_path)
    (src / "metrics.json").write_text(json.dumps({"programs": {
        "identity": {"num_params": 366, "llc_mean": 20.0, "valid": False},
        "sort": {"num_params": 17019, "llc_mean": float("nan"), "valid": False}}}))
    _escalation(tmp_path / "complexity_escalation", 1, {"identity": {"num_params": 366, "llc_mean": 21.0,
                                                                     "valid": True}})
    return src


def _escalation(folder, escalate, programs):
    folder.mkdir(exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"programs": programs}))
    (folder / "config.json").write_text(json.dumps({"settings": {"escalate": escalate}}))


def test_verdicts_take_the_supplement_over_the_table_and_mark_unestimated_programs(tmp_path):
    _with_rows(tmp_path)
    assert verdicts(tmp_path) == {"identity": "valid", "sort": "not estimated"}
    # a sub-folder run at a larger budget decides, whatever its verdict (as in q1_answer); one without an
    # estimate does not
    _escalation(tmp_path / "complexity_escalation" / "identity_escalate_3", 3,
                {"identity": {"llc_mean": 25.0, "valid": False}, "sort": {"llc_mean": float("nan"), "valid": False}})
    assert verdicts(tmp_path) == {"identity": "not valid", "sort": "not estimated"}


def test_unknown_programs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown programs"):
        run(_with_rows(tmp_path), tmp_path / "o", ("no_such_program",), 1000, 200, 1)


def test_the_probe_runs_within_max_params_and_its_parts_merge_with_the_verdicts_read_anew(tmp_path):
    """One short probe of identity (sort is above max_params; one run serves both halves: it is the slow part),
    then `merge` with a second part as a later run would write it: every run is kept, the verdicts are read at
    merge time, and duplicates, parts at other settings and the older folder layout are handled."""
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

    first = out
    # a second part as a later run would write it: another program, its own commit and time
    second = tmp_path / "second"
    shutil.copytree(first, second)
    m = json.loads((second / "metrics.json").read_text())
    m["programs"] = {"sort": {**m["programs"]["identity"], "program": "sort", "num_params": 17019}}
    (second / "metrics.json").write_text(json.dumps(m))
    c = json.loads((second / "config.json").read_text())
    c["runs"] = [{**c["runs"][0], "commit": "a" * 40, "programs": ["sort"], "seconds": 60.0, "max_params": 25000}]
    c["max_params"], c["not_probed"] = 25000, []
    (second / "config.json").write_text(json.dumps(c))
    # the verdicts have changed since the first part ran: sort now has a valid estimate
    _escalation(tmp_path / "complexity_escalation", 1, {
        "identity": {"num_params": 366, "llc_mean": 21.0, "valid": True},
        "sort": {"num_params": 17019, "llc_mean": 90.0, "valid": True}})
    out = tmp_path / "merged"
    metrics = merge([first, second], out, tmp_path)
    assert sorted(metrics["programs"]) == ["identity", "sort"]
    assert metrics["programs"]["sort"]["verdict"] == "valid"  # read at merge time, not copied from the part
    config = json.loads((out / "config.json").read_text())
    assert [r["commit"][:1] for r in config["runs"]][1] == "a" and len(config["runs"]) == 2
    assert config["not_probed"] == [] and config["max_params"] == 25000
    assert config["seconds"] == pytest.approx(config["runs"][0]["seconds"] + 60.0)
    readme = (out / "README.md").read_text()
    assert "| sort | 17019 |" in readme and "`aaaaaaaaaa`" in readme and "not probed" not in readme
    with pytest.raises(ValueError, match="more than one part"):
        merge([first, first], tmp_path / "twice", tmp_path)
    # a part in the layout written before runs were recorded (the committed folder's): one run, in its own keys
    c0 = json.loads((first / "config.json").read_text())
    record = c0.pop("runs")[0]
    c0["workers"] = record["workers"]
    (first / "config.json").write_text(json.dumps(c0))
    merge([first], tmp_path / "old", tmp_path)
    assert json.loads((tmp_path / "old" / "config.json").read_text())["runs"] == [record]
    c["steps"] = 400
    (second / "config.json").write_text(json.dumps(c))
    with pytest.raises(ValueError, match="differ in steps"):
        merge([first, second], tmp_path / "other", tmp_path)

