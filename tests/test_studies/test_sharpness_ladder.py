"""`studies.sharpness_ladder`: rungs at the table's settings, exactness first, shared rungs estimated once."""

import json

import pytest

from studies import sharpness_ladder as sl
from tests.test_studies.test_complexity_escalation import _source


def _rung(prog, knob, value, llc, valid, half_rank=10.0):
    return {"program": prog, "knob": knob, "value": value, "estimated": True, "llc_mean": llc, "llc_std": 0.1,
            "half_rank": half_rank, "valid": valid, "reason": "" if valid else "sampler verdict: R-hat 1.5"}


def test_a_ladder_estimates_exact_rungs_once_and_refuses_inexact_ones(tmp_path):
    ladders = (("softmax_coldness", (0.01, 100.0)), ("mlp_exactness", (100.0,)))
    out = tmp_path / "out"
    metrics = sl.run(_source(tmp_path), out, ("count_a",), ladders, escalate=0, workers=1)
    rows = {(r["knob"], r["value"]): r for r in metrics["rows"]}
    # a coldness of 0.01 makes attention uniform: the program is no longer computed, so no estimate is made
    cold = rows[("softmax_coldness", 0.01)]
    assert cold["estimated"] is False and cold["reference_accuracy"] < 1 and "not exact" in cold["reason"]
    # the table's sharpness is a rung of both ladders: one estimate, reported on both
    a, b = rows[("softmax_coldness", 100.0)], rows[("mlp_exactness", 100.0)]
    assert a["estimated"] and a["llc_mean"] == b["llc_mean"] and a["reference_accuracy"] == 1.0
    assert a["valid"] == (a["check_basin"] and a["check_bounds"] and a["check_rhat"])
    assert a["valid"] or a["reason"]
    readme = (out / "README.md").read_text()
    assert "## The answer" in readme and "| count_a | softmax_coldness | 0.01 |" in readme and " nan" not in readme
    assert "tuned step" in readme
    assert (out / "sharpness.png").stat().st_size > 0
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["checks"] is False and config["runs"][0]["programs"] == ["count_a"]
    assert config["runs"][0]["ladders"] == [["softmax_coldness", [0.01, 100.0]], ["mlp_exactness", [100.0]]]

    # a second part that climbs only a coldness ladder (as for a program the table's sharpness blocks) merges,
    # and the merged folder records which ladders each run climbed
    other = tmp_path / "other"
    other.mkdir()
    rung = {**cold, "program": "histogram", "value": 20.0}
    (other / "metrics.json").write_text(json.dumps({"rows": [rung]}))
    run2 = {**config["runs"][0], "programs": ["histogram"], "ladders": [["softmax_coldness", [20.0]], ["mlp_exactness", []]]}
    (other / "config.json").write_text(json.dumps({**config, "runs": [run2]}))
    # and a third part may add another rung to a program an earlier part holds
    third = tmp_path / "third"
    third.mkdir()
    (third / "metrics.json").write_text(json.dumps({"rows": [{**cold, "value": 20.0}]}))
    run3 = {**config["runs"][0], "ladders": [["softmax_coldness", [20.0]], ["mlp_exactness", []]]}
    (third / "config.json").write_text(json.dumps({**config, "runs": [run3]}))
    merged = sl.merge([out, other, third], tmp_path / "merged")
    assert len(merged["rows"]) == len(metrics["rows"]) + 2
    assert sorted(r["value"] for r in merged["rows"] if (r["program"], r["knob"]) == ("count_a", "softmax_coldness")) \
        == [0.01, 20.0, 100.0]
    runs = json.loads((tmp_path / "merged" / "config.json").read_text())["runs"]
    assert [r["ladders"] for r in runs] == [config["runs"][0]["ladders"], run2["ladders"], run3["ladders"]]
    text = (tmp_path / "merged" / "README.md").read_text()
    assert "count_a (softmax_coldness 0.01, 100; mlp_exactness 100)" in text and "histogram (softmax_coldness 20)" in text


def test_summaries_find_where_validity_ends_and_the_trend():
    rows = [_rung("p", "softmax_coldness", v, llc, ok) for v, llc, ok in
            ((10.0, 20.0, True), (20.0, 21.0, True), (50.0, 22.0, True), (100.0, 23.0, True), (200.0, 5.0, False))]
    (s,) = sl.summaries(rows)
    assert s["valid_rungs"] == 4 and s["breaks_at"] == 200.0 and "R-hat" in s["breaks_because"]
    assert s["spearman_rho"] == pytest.approx(1.0) and s["llc_min"] == 20.0 and s["llc_max"] == 23.0
    assert s["spearman_p"] == pytest.approx(2 / 24)  # exact: 2 of the 4! orderings are as monotone
    assert s["ratio_min"] == pytest.approx(2.0)
    assert sl._last_change(rows, s) == pytest.approx(1 / 22)
    # equal estimates alone are no trend, and say nothing about the weights; one weights digest says they are shared
    flat = [dict(r, llc_mean=20.0, weights=f"w{i}") for i, r in enumerate(rows)]
    (f,) = sl.summaries(flat)
    assert f["spread"] == 0 and f["spearman_rho"] != f["spearman_rho"] and f["models"] == 5
    assert "same weights" not in sl._summary_line(flat, f)
    same = [dict(r, weights="w") for r in flat]
    (g,) = sl.summaries(same)
    assert g["models"] == 1 and "every rung compiles the same weights" in sl._summary_line(same, g)
    # with fewer than three valid rungs there is no trend
    (t,) = sl.summaries([dict(r, valid=r["value"] < 20) for r in rows])
    assert t["valid_rungs"] == 1 and t["spearman_rho"] != t["spearman_rho"] and t["breaks_at"] == 20.0
    # a ladder without a valid rung says why each rung failed
    none = [dict(r, valid=False, reason="sampler verdict: R-hat 1.5") for r in rows]
    (u,) = sl.summaries(none)
    assert "no valid rung of 5 (at 10: sampler verdict: R-hat 1.5;" in sl._summary_line(none, u)


def test_weights_digest_tells_which_knobs_change_a_program():
    from rasp_models.base import Sharpness

    d = sl.weights_digest
    # fractok's MLPs are numerical (no discretising ramp): exactness leaves its weights alone, coldness does not
    assert d("fractok", Sharpness(mlp_exactness=4.0)) == d("fractok", Sharpness(mlp_exactness=1000.0))
    assert d("fractok", Sharpness(softmax_coldness=20.0)) != d("fractok", Sharpness(softmax_coldness=100.0))
    assert d("count_a", Sharpness(mlp_exactness=4.0)) != d("count_a", Sharpness(mlp_exactness=1000.0))
    assert d("count_a", Sharpness()) != d("histogram", Sharpness())


def test_rungs_that_compile_the_same_weights_share_one_estimate(tmp_path, monkeypatch):
    calls = []

    def fake_job(program, overrides, st):
        calls.append((program, overrides))
        return {"program": program, "reference_accuracy": 1.0, "estimated": True, "llc_mean": float(len(calls)),
                "llc_std": 0.1, "half_rank": 1.0, "effective_half_rank": 1.0, "half_dim": 50.0, "rhat": 1.0,
                "acceptance": 0.8, "draw_accuracy_min": 1.0, "mean_draw_loss": 0.0, "step_size": 0.1,
                "trustworthy": True, "max_steps_used": 10, "valid": True, "reason": ""}

    monkeypatch.setattr(sl, "job", fake_job)
    ladders = (("softmax_coldness", (20.0, 100.0)), ("mlp_exactness", (4.0, 100.0)))
    metrics = sl.run(_source(tmp_path), tmp_path / "out", ("fractok",), ladders, escalate=0, workers=1)
    # fractok: coldness 20 is one model; coldness 100 and both exactness rungs compile the table's weights
    assert calls == [("fractok", {"softmax_coldness": 20.0}), ("fractok", {"softmax_coldness": 100.0})]
    rows = {(r["knob"], r["value"]): r for r in metrics["rows"]}
    assert rows[("mlp_exactness", 4.0)]["llc_mean"] == rows[("mlp_exactness", 100.0)]["llc_mean"] \
        == rows[("softmax_coldness", 100.0)]["llc_mean"] != rows[("softmax_coldness", 20.0)]["llc_mean"]
    assert len({r["weights"] for r in metrics["rows"]}) == 2
    lines = {(s["program"], s["knob"]): sl._summary_line(metrics["rows"], s) for s in metrics["summaries"]}
    assert "every rung compiles the same weights" in lines[("fractok", "mlp_exactness")]
    assert "same weights" not in lines[("fractok", "softmax_coldness")]
    assert "every rung compiles the same weights" in (tmp_path / "out" / "README.md").read_text()


def test_merge_refuses_parts_that_overlap_or_differ(tmp_path):
    def part(name, programs, settings, rungs=()):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"settings": settings, "ladders": [], "source_commit": "f",
                                                   "runs": [{"programs": programs, "seconds": 1.0}]}))
        rows = [_rung(programs[0], "softmax_coldness", v, 1.0, False) for v in rungs]
        (d / "metrics.json").write_text(json.dumps({"rows": rows}))
        return d

    # the same program may climb different rungs in two parts, but no rung may be held twice
    with pytest.raises(ValueError, match=r"more than one part: \[\('x', 'softmax_coldness', 20.0\)\]"):
        sl.merge([part("a", ["x"], {"n": 1}, (5.0, 20.0)), part("b", ["x"], {"n": 1}, (20.0,))], tmp_path / "o")
    with pytest.raises(ValueError, match="differ in settings"):
        sl.merge([part("c", ["x"], {"n": 1}), part("d", ["y"], {"n": 2})], tmp_path / "o")


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown programs"):
        sl.run(_source(tmp_path), tmp_path / "o", ("no_such_program",))
    with pytest.raises(ValueError, match="ladders"):
        sl.run(_source(tmp_path), tmp_path / "o", ("count_a",), (("relu_margin", (0.0,)),))
    with pytest.raises(ValueError, match="hold a rung"):
        sl.run(_source(tmp_path), tmp_path / "o", ("count_a",), (("softmax_coldness", ()), ("mlp_exactness", ())))
    with pytest.raises(ValueError, match="escalate"):
        sl.run(_source(tmp_path), tmp_path / "o", ("count_a",), escalate=-1)
