"""`studies.q1_answer`: the Q1 statistics over valid programs only, with the escalation's rows preferred."""

import json
import math

import numpy as np
import pytest

from studies import q1_answer, q1_evidence


def _row(prog, llc, half_rank, valid, sw=0, reason=""):
    return {"program": prog, "num_params": 100, "llc_mean": llc, "llc_std": 0.5, "half_rank": half_rank,
            "effective_half_rank": half_rank, "half_dim": 50.0, "valid": valid, "reason": reason, "layers": 1,
            "heads": 1, "mlp_width": 4, "residual_width": 8, "primitives": 2, "selector_width": sw}


def _folders(tmp_path, table, escalation=None, ladders=None):
    for name, rows in (("complexity", table), ("complexity_escalation", escalation)):
        if rows is None:
            continue
        (tmp_path / name).mkdir()
        metrics = {"programs": {r["program"]: r for r in rows}, "ladders": ladders or {}}
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics))
        config = {"environment": {"git_commit": name[0] * 40}, "settings": {"escalate": 1}, "scale": "quick",
                  "config": {"validity": {"localization": 1e6, "n": 512, "beta": 1e7, "num_chains": 4, "max_steps": 4000,
                                          "sharpness": {"softmax_coldness": 100.0, "mlp_exactness": 100.0}}}}
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_the_largest_budget_escalation_run_decides_whatever_its_verdict(tmp_path):
    table = [_row("a", 10.0, 10.0, True), _row("b", 20.0, 20.0, False, reason="flagged"),
             _row("c", 12.0, 11.0, True), _row("d", 31.0, 30.0, True)]
    src = _folders(tmp_path, table, [_row("b", 26.0, 20.0, True), _row("c", 11.5, 11.0, True)])

    def run_at(name, escalate, rows):
        d = src / "complexity_escalation" / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({"programs": {r["program"]: r for r in rows}}))
        (d / "config.json").write_text(json.dumps({"environment": {"git_commit": "e" * 40},
                                                   "settings": {"escalate": escalate}}))

    # b at a larger budget is flagged again: its verdict now decides, although the smaller budget's was valid;
    # c's sub-folder ran at the same escalate as the main folder, so the main folder's row stays
    run_at("b_escalate_3", 3, [_row("b", 25.0, 20.0, False, reason="R-hat 1.3")])
    run_at("c_again", 1, [_row("c", 99.0, 11.0, False, reason="other")])
    rows = {r["program"]: r for r in q1_answer.program_rows(src)}
    assert rows["b"]["source"] == "complexity_escalation/b_escalate_3" and rows["b"]["valid"] is False
    assert rows["b"]["reason"] == "R-hat 1.3" and rows["b"]["llc_mean"] == 25.0
    assert rows["c"]["source"] == "complexity_escalation" and rows["c"]["llc_mean"] == 11.5
    assert rows["a"]["source"] == "complexity"
    q1_answer.run(src, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["source_commits"]["complexity_escalation/b_escalate_3"] == "e" * 40
    assert config["scale"] == "quick"  # the complexity table's, for the results index


def test_escalation_rows_replace_the_table_and_only_valid_programs_enter_the_statistics(tmp_path):
    table = [_row("a", 10.0, 10.0, True), _row("b", 20.0, 20.0, False, sw=1, reason="flagged"),
             _row("c", 12.0, 11.0, True, sw=1), _row("d", 31.0, 30.0, True),
             _row("e", float("nan"), float("nan"), False, reason="not estimated")]
    escalation = [_row("b", 26.0, 20.0, True), _row("x_unestimated", float("nan"), float("nan"), False)]
    ladders = {"lad": {"rungs": [{"program": "r1", "valid_seeds": 2, "llc_mean": 5.0, "half_rank": 5.0},
                                 {"program": "r2", "valid_seeds": 0, "llc_mean": 99.0, "half_rank": 5.0}]}}
    (tmp_path / "src").mkdir()
    src = _folders(tmp_path / "src", table, escalation, ladders)
    out = tmp_path / "out"
    metrics = q1_answer.run(src, out)
    st = metrics["statistics"]
    rows = metrics["programs"]
    assert rows["b"]["source"] == "complexity_escalation" and rows["b"]["ratio"] == pytest.approx(1.3)
    assert rows["a"]["source"] == "complexity" and "x_unestimated" not in rows  # rows follow the table's programs
    assert st["valid_programs"] == ["a", "b", "c", "d"]
    assert st["ratio_min"] == pytest.approx(1.0) and st["ratio_max"] == pytest.approx(1.3)
    assert st["largest_ratio"] == "b" and st["spearman_llc_half_rank"] == pytest.approx(1.0)
    # SelectorWidth programs b, c (1.3, 1.09) against a, d (1.0, 1.033): complete separation, exact p = 2 / C(4, 2)
    assert st["selector_width_ratios"] == pytest.approx([1.3, 12 / 11])
    assert st["mannwhitney_p"] == pytest.approx(2 / 6)
    # tier B: only ladder rungs with trustworthy seeds; never pooled into the statistics
    assert [r["program"] for r in metrics["tier_b"]] == ["r1"]
    readme = (out / "README.md").read_text()
    assert "**4 of 5 programs have a valid LLC**" in readme and "withdrawn" in readme and " nan" not in readme
    assert (out / "llc_vs_rank.png").stat().st_size > 0
    assert json.loads((out / "config.json").read_text())["source_commits"] == {
        "complexity": "c" * 40, "complexity_escalation": "c" * 40}


def test_fewer_than_three_valid_programs_give_no_statistics(tmp_path):
    st = q1_answer.statistics([dict(_row("a", 10.0, 10.0, True), ratio=1.0),
                               dict(_row("b", 30.0, 10.0, False), ratio=3.0)])
    assert st["num_valid"] == 1 and "no statistics" in st["note"] and "ratio_median" not in st
    assert "too few" in q1_answer.answer(st, [{"valid": True, "num_params": 1}], 4)[0]


def test_a_missing_complexity_study_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="complexity"):
        q1_answer.run(tmp_path, tmp_path / "out")


def test_the_ratio_interval_is_the_t_interval():
    lo, hi = q1_answer._t_interval(np.array([1.0, 2.0, 3.0]))
    assert (lo + hi) / 2 == pytest.approx(2.0) and hi - lo == pytest.approx(2 * 4.302653 / math.sqrt(3), rel=1e-5)


def test_programs_valid_only_at_a_lower_sharpness_are_named_and_kept_out_of_the_statistics(tmp_path):
    table = [_row("a", 10.0, 10.0, True), _row("c", 12.0, 11.0, True), _row("d", 31.0, 30.0, True),
             _row("e", 3.0, 40.0, False, reason="R-hat 2.1")]
    (tmp_path / "src").mkdir()
    src = _folders(tmp_path / "src", table)
    rung = {"knob": "softmax_coldness", "half_rank": 40.0}
    rows = [{**rung, "program": "e", "value": 5.0, "llc_mean": 44.0, "valid": True},
            {**rung, "program": "e", "value": 50.0, "llc_mean": 9.0, "valid": False},
            {**rung, "program": "e", "value": 150.0, "llc_mean": 41.0, "valid": True},
            {**rung, "program": "a", "value": 20.0, "llc_mean": 10.5, "half_rank": 10.0, "valid": True}]
    (src / "sharpness_ladder").mkdir()
    (src / "sharpness_ladder" / "metrics.json").write_text(json.dumps({"rows": rows}))
    metrics = q1_answer.run(src, tmp_path / "out")
    assert metrics["statistics"]["valid_programs"] == ["a", "c", "d"]
    line = next(x for x in (tmp_path / "out" / "README.md").read_text().splitlines() if "less sharp rungs" in x)
    # e's rung at coldness 5 is below the table's 100; its rung at 150 (sharper, and valid) is not a rescue
    assert "e at softmax_coldness=5 (LLC 44.0, LLC/(rank/2) 1.10)" in line
    assert "=50" not in line and "=150" not in line and "a at" not in line


def test_a_program_without_an_estimate_carries_its_table_sharpness_rung_and_its_cost(tmp_path):
    nan = float("nan")
    table = [_row("a", 10.0, 10.0, True), _row("c", 12.0, 11.0, True), _row("d", 31.0, 30.0, True),
             _row("big", nan, nan, False, reason="not estimated: 20000 parameters > max_params 3000"),
             _row("huge", nan, nan, False, reason="not estimated: 90000 parameters > max_params 3000")]
    (tmp_path / "src").mkdir()
    src = _folders(tmp_path / "src", table)
    rung = {"knob": "softmax_coldness", "half_rank": 40.0, "estimated": True, "llc_std": 2.0}
    rows = [{**rung, "program": "big", "value": 100.0, "llc_mean": 44.0, "valid": False, "reason": "R-hat 1.5"},
            {**rung, "program": "big", "value": 20.0, "llc_mean": 30.0, "valid": True, "reason": ""},
            {**rung, "program": "a", "value": 100.0, "llc_mean": 10.2, "valid": True, "reason": ""}]
    (src / "sharpness_ladder").mkdir()
    (src / "sharpness_ladder" / "metrics.json").write_text(json.dumps({"rows": rows}))
    (src / "estimate_cost").mkdir()
    cost = {"programs": {"big": {"projected_hours": 1.5}, "huge": {"projected_hours": 30.0},
                         "a": {"projected_hours": 0.1}}}
    (src / "estimate_cost" / "metrics.json").write_text(json.dumps(cost))
    (src / "estimate_cost" / "config.json").write_text(json.dumps({"environment": {"git_commit": "f" * 40}}))
    metrics = q1_answer.run(src, tmp_path / "out")
    progs = metrics["programs"]
    # only the rung at the table's own coldness (100) speaks for the table's weights; the coldness-20 rung does not
    assert "LLC 44.0 +- 2.0, not valid: R-hat 1.5" in progs["big"]["reason"]
    assert "30.0" not in progs["big"]["reason"] and "about 1.5 h of one core" in progs["big"]["reason"]
    assert progs["huge"]["reason"].startswith("not estimated: 90000") and "about 30 h" in progs["huge"]["reason"]
    assert "sharpness_ladder" not in progs["huge"]["reason"]
    assert progs["a"]["reason"] == ""  # an estimated program keeps its own reason
    assert metrics["statistics"]["valid_programs"] == ["a", "c", "d"]
    assert json.loads((tmp_path / "out" / "config.json").read_text())["source_commits"]["estimate_cost"] == "f" * 40


def test_the_answer_says_whether_the_bounds_check_could_have_shaped_the_ratios(tmp_path):
    rows = [dict(_row("a", 10.0, 10.0, True), effective_half_rank=10.0, failed_checks=[]),
            dict(_row("c", 12.0, 11.0, True), effective_half_rank=11.0, failed_checks=[]),
            dict(_row("d", 31.0, 30.0, True), effective_half_rank=30.0, failed_checks=[]),
            dict(_row("e", 5.0, 40.0, False), effective_half_rank=40.0, failed_checks=["bounds"]),
            dict(_row("f", 5.0, 40.0, False), effective_half_rank=40.0, failed_checks=["bounds", "rhat"])]
    for r in rows:
        r["ratio"] = r["llc_mean"] / r["half_rank"]
    st = q1_answer.statistics(rows)
    assert st["bounds_cut_min"] == pytest.approx(0.85) and st["failed_bounds_only"] == ["e"]
    assert st["closest_to_cut"] == pytest.approx(1.0 / 0.85)
    line = next(x for x in q1_answer.answer(st, rows, 4) if "Selection" in x)
    assert "measured, not imposed" in line and "1 program(s) failed on the bounds alone (e)" in line
    rows[0]["llc_mean"], rows[0]["ratio"] = 8.6, 0.86  # 1% above its cut of 0.85
    line = next(x for x in q1_answer.answer(q1_answer.statistics(rows), rows, 4) if "Selection" in x)
    assert "may shape the lower end" in line


def test_the_probe_sets_each_programs_crossing_cost_against_the_budget_and_the_valid_programs(tmp_path):
    nan = float("nan")
    table = [_row("a", 10.0, 10.0, True), _row("c", 12.0, 11.0, True), _row("d", 31.0, 30.0, True),
             _row("walled", 3.0, 40.0, False, reason="R-hat 2.1"),
             _row("big", nan, nan, False, reason="not estimated: 20000 parameters > max_params 3000")]
    (tmp_path / "src").mkdir()
    src = _folders(tmp_path / "src", table)
    (src / "landscape_probe").mkdir()
    steps = {"a": 0.01, "c": 0.002, "walled": 1e-6, "big": 0.005}  # d was not probed
    (src / "landscape_probe" / "metrics.json").write_text(json.dumps(
        {"programs": {p: {"step_size": v} for p, v in steps.items()}}))
    (src / "landscape_probe" / "config.json").write_text(json.dumps({"environment": {"git_commit": "p" * 40}}))
    (src / "estimate_cost").mkdir()
    (src / "estimate_cost" / "metrics.json").write_text(json.dumps(
        {"programs": {"walled": {"projected_hours": 1.0, "cpu_seconds_per_eval_n": 0.36}}}))
    metrics = q1_answer.run(src, tmp_path / "out")
    progs = metrics["programs"]
    assert progs["walled"]["crossing_steps"] == pytest.approx(1e6) and progs["a"]["probe_step"] == 0.01
    assert math.isnan(progs["d"]["crossing_steps"])
    readme = (tmp_path / "out" / "README.md").read_text()
    lines = readme.splitlines()
    line = next(x for x in lines if "landscape probe" in x)
    assert lines[lines.index(line) + 1].startswith("- How sure")  # the evidence comes before how sure the answer is
    assert "the valid programs need 100-500" in line and "budget of 4000 gradient" in line
    # only the program whose crossing costs more than the whole budget is put down to the walls
    assert "walled 1.0e+06: one crossing costs 250 x the whole budget" in line
    # c had the fewest crossings in the budget of the valid programs (4000 / 500 = 8): 8 x 1e6 evaluations x 0.36 s
    assert "the fewest had (8.0 in the budget), the base estimate alone would take about walled 800 h" in line
    assert "big 200: no more than a valid program, so the walls do not explain" in line
    assert "larger budget" not in line
    assert line.endswith("not probed: d.")
    assert "| walled | 100 | complexity | 3.00 +- 0.50 | 40.0 | 0.07 | 0 | 2 | 1.0e+06 | no |" in readme
    assert "| d | 100 | complexity | 31.00 +- 0.50 | 30.0 | 1.03 | 0 | 2 | not probed | yes |" in readme
    assert json.loads((tmp_path / "out" / "config.json").read_text())["source_commits"]["landscape_probe"] == "p" * 40


def test_without_a_probed_valid_program_there_is_no_crossing_line():
    rows = [dict(_row("a", 10.0, 10.0, True), crossing_steps=float("nan")),
            dict(_row("b", 1.0, 10.0, False), crossing_steps=1e6)]
    assert q1_evidence.crossing_line(rows, 4000) is None


def test_a_crossing_dearer_than_every_valid_program_but_within_the_budget_is_not_put_down_to_the_walls():
    rows = [dict(_row("a", 10.0, 10.0, True), crossing_steps=480.0),
            dict(_row("b", 1.0, 10.0, False), crossing_steps=1572.0)]
    line = q1_evidence.crossing_line(rows, 4000)
    assert "b 1572: more than every valid program but within the budget" in line and "out of reach" not in line
